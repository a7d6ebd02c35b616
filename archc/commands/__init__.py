"""CLI subcommands, one module per family; shared option helpers live in `common`."""
