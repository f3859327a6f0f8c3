"""Generated from proto/ by `python -m astra._codegen`. Do not edit."""
