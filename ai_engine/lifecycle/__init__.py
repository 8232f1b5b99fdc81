"""The model lifecycle: what runs, how it changes, and the record of every change.

Modules (import from each; this package re-exports nothing, because ``config`` reads the env file
through ``envfile`` while the edits build on ``config``):

- ``envfile``: systemd ``EnvironmentFile`` parsing and atomic, keyed writing.
- ``registry``: staged artifacts and their index (sha256, report, baselines).
- ``audit``: the append-only audit log of every change.
- ``reload_signal``: the service's pid file and the SIGHUP that makes it reload.
- ``edits``: one validated, backed-up, audited, atomic env-file edit (``edit_env``).
- ``gate``: the gate verdict and edge a model needs before it votes.
- ``activation``: ``stage``, ``shadow`` and ``activate``.
- ``rollback``: ``backup`` and the fast, full and nuclear rollbacks.
- ``verification``: ``verify-shadow``, the spec's success and fail criteria, automated.
- ``policy``: promotion and rollback by policy, which ``serve`` follows on its own.
"""

__all__: list[str] = []
