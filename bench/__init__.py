"""lkr microbenchmarks (run with `python -m bench` from a checkout, or `lkr bench`)."""
