"""What may be built: the spec model and parser, spec validation, package policy, personal families."""
