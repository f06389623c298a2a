"""Simulated employees who use kbloop over its HTTP API (`kbloop simulate`): rounds of questions,
votes, corrections and side-by-side choices, a refresh, and the judgement of the result. It sits
above the service and the trainer, which it drives."""
