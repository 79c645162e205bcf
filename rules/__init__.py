"""Rule files, the evaluator and backtests (one state machine for both)."""
