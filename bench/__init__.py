"""snnbench harness: CLI, registry, config, runner, run records, tables."""
