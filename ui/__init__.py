"""The web UI: Gradio Blocks mounted at `/ui` (chat with citations and ratings, side-by-side choices,
the knowledge base, the Models tab, the operator's views); `ui.server` composes it with the API."""
