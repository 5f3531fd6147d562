"""Training stages: one module per stage, each with main(argv)."""
