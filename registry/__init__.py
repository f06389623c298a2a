"""Model registry: versions, aliases with their full history, the evaluation gate, promotion, rollback."""
