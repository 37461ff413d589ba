"""str: f-strings, split/join, case changes, UCS-2/UCS-4 widening."""

CONTROL_FORMS = ("raw", "ucs2", "ucs4")


def work(ctx):
    s = ctx.read_text()
    line = f"user=app;password={s};host=db"
    fields = dict(part.split("=", 1) for part in line.split(";"))
    joined = "|".join([fields["password"], s.upper(), s.lower()])
    wide2 = fields["password"] + "\u20ac"          # UCS-2 copy
    wide4 = "\U0001f511" + fields["password"]      # UCS-4 copy
    back = wide2[:-1] + wide4[1:]
    return len(joined) + len(back)
