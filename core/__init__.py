"""The bottom layer: what every package shares and nothing of ours is imported by.

- settings: the one typed `Settings`, read from `KBLOOP_*` once (`get_settings`);
- datadir: `DataDir`, every path under the data directory, named once (`Settings.data`);
- errors: `KbloopError`, the base of every named error, with its HTTP status, retry-after and hint
  (one handler in the app answers them all);
- clock: UTC timestamps as kbloop writes them;
- files: fsync and atomic replacement of files (`atomic_path`, `write_json`).

Nothing in core imports another kbloop package (tests/test_layers.py checks it).
"""
