"""`python -m cli ...` = `kbloop ...`."""

from cli.app import app

app(prog_name="kbloop")
