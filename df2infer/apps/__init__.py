"""The `df2infer` command's verbs: one module per verb (`df2infer <verb>` is df2infer/apps/<verb>.py, a dash
becoming an underscore), each with `add_arguments(parser)` and `run(args) -> int`, wired in apps/main.py.
Argument parsing lives here only; the library modules they call take plain arguments."""
