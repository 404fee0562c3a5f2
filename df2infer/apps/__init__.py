"""Every CLI verb, one module per verb (add_arguments(parser) + run(args))."""
