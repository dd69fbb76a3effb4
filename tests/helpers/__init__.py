"""Test helpers, each written once and imported by the tests (and by bench/, as `tests.helpers`).

- paths: the repository and the venv's bin folder;
- ports, processes, ready: a free port, a process started in its own group and stopped with it,
  waiting for a server to become ready (or to exit);
- cli: the tools' environment, running a command, `fw()` (the faultwatch CLI in a project);
- signals, datafiles: the synthetic signals, and the raw formats they are written in;
- projects, gate_project: a copy of this project on tiny data, and a small project of crafted
  models for register / promote / package / deploy;
- serving, monitor_synthetic: what the serving and monitoring tests share;
- postgres, browser, npm: a real PostgreSQL server, a headless Chromium, the npm schemas.

Fixtures live in tests/conftest.py and the plugin modules it registers (serving_fixtures,
xdist_groups). Helpers import each other relatively, so both import names work.
"""
