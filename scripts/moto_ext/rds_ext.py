"""RDS additions to the moto test server (owned by the RDS work; a stub until then).

``install(ext)`` is called by ``server.py`` with the ``ext.Ext`` instance: register
``ext.before`` / ``ext.after`` hooks for RDS operations (query protocol: the operation is
the ``Action`` parameter, e.g. ``ModifyDBInstance``) and start delayed transitions with
``ext.start("rds", "db-instance", identifier, [("modifying", 0.0)], enter, finish)``.
See README.md and eks_ext.py for a complete example.
"""


def install(ext):
    """Registers the RDS hooks on ``ext`` (none yet)."""
