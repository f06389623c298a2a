"""The service fixtures (tiny model, fixture index, app clients) for tests of the running server."""

from tests.service.conftest import make_client, make_settings, tiny_model_dir, tokens_file

__all__ = ["make_client", "make_settings", "tiny_model_dir", "tokens_file"]
