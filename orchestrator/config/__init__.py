"""The sweep config: declared once (`schema`, `sections`), loaded and validated once (`loading`),
with errors that name the field, the value and the fix (`errors`). Imports no torch or Ray."""
