"""RDS additions to the moto test server (see README.md, section "RDS (rds_ext.py)").

moto's RDS reaches every final status at once and applies every ModifyDBInstance change
immediately. This module keeps moto's models and protocol and adds, through ``ext`` hooks:

- delayed transitions, held per ``POST /_opsctl/behaviour`` (``service`` ``rds``):
  db-instance ``modifying`` (ModifyDBInstance), ``creating`` then ``backing-up``
  (RestoreDBInstanceToPointInTime, RestoreDBInstanceFromDBSnapshot,
  CreateDBInstanceReadReplica), ``rebooting`` (RebootDBInstance); db-snapshot ``creating``
  (CreateDBSnapshot); export-task ``STARTING`` then ``IN_PROGRESS`` (StartExportTask). The
  changed values become visible when the transition ends, as in RDS;
- ``PendingModifiedValues`` for the changes ModifyDBInstance defers to the maintenance window
  when ``ApplyImmediately`` is not true (instance class, storage, storage type, IOPS, engine
  version, Multi-AZ, backup retention turned on or off), as the ModifyDBInstance API
  reference documents; ``MasterUserPassword`` pending (masked) until the modification ends;
- injected failure (``fail``: ``{"status": "incompatible-parameters"}``; export tasks:
  ``{"status": "FAILED", "cause": "..."}``): the transition ends in that status;
- ``InvalidDBInstanceState`` for a modify or reboot of an instance that is not ``available``.
"""

# (model attribute, PendingModifiedValues key) of the fields ModifyDBInstance may defer.
FIELDS = [
    ("db_instance_class", "DBInstanceClass"),
    ("allocated_storage", "AllocatedStorage"),
    ("storage_type", "StorageType"),
    ("iops", "Iops"),
    ("engine_version", "EngineVersion"),
    ("multi_az", "MultiAZ"),
    ("backup_retention_period", "BackupRetentionPeriod"),
]


def _deferred(attr, old, new):
    """Whether a change waits for the maintenance window without ApplyImmediately: backup
    retention only when turned on or off (0 <-> N); the others always."""
    if attr == "backup_retention_period":
        return (int(old or 0) > 0) != (int(new or 0) > 0)
    return True


def install(ext):
    """Registers the RDS hooks on ``ext``."""
    from moto.rds.models import rds_backends

    def backend(req):
        return rds_backends[req.account][req.region]

    def instance(req, name):
        ident = req.arg(name)
        return ident, backend(req).databases.get(ident) if ident else None

    def refuse_unless_available(req):
        ident, db = instance(req, "DBInstanceIdentifier")
        if db is not None and (db.status != "available" or ext.busy("rds", "db-instance", ident)):
            return ext.error(
                req,
                "InvalidDBInstanceState",
                f"Database instance is not in available state (status {db.status}).",
            )
        return None

    def hold_instance(ident, db, phases, on_success, failure_default):
        def enter(status):
            db.status = status

        def finish(fail):
            if fail:
                db.status = fail.get("status", failure_default)
                return
            on_success()
            db.status = "available"

        ext.start("rds", "db-instance", ident, phases, enter, finish)

    # ---- ModifyDBInstance -------------------------------------------------------------------

    def before_modify(req):
        refused = refuse_unless_available(req)
        if refused is not None:
            return refused
        _, db = instance(req, "DBInstanceIdentifier")
        if db is not None:
            req.rds_old = {attr: getattr(db, attr, None) for attr, _ in FIELDS}
        return None

    def after_modify(req, status, body):
        if status != 200 or not hasattr(req, "rds_old"):
            return None
        ident, db = instance(req, "DBInstanceIdentifier")
        if db is None:
            return None
        immediate = (req.arg("ApplyImmediately") or "").lower() == "true"
        old = req.rds_old
        applied, pending = {}, {}
        for attr, key in FIELDS:
            new = getattr(db, attr, None)
            if new == old[attr]:
                continue
            setattr(db, attr, old[attr])
            if not immediate and _deferred(attr, old[attr], new):
                pending[key] = new
            else:
                applied[attr] = new
        current = dict(getattr(db, "pending_modified_values", None) or {})
        current.update(pending)
        password = req.arg("MasterUserPassword") is not None
        if password:
            current["MasterUserPassword"] = "****"
        db.pending_modified_values = current or None
        if not applied and not password:
            return None  # only pending values: the instance stays available

        def on_success():
            for attr, value in applied.items():
                setattr(db, attr, value)
            left = dict(db.pending_modified_values or {})
            left.pop("MasterUserPassword", None)
            db.pending_modified_values = left or None

        hold_instance(ident, db, [("modifying", 0.0)], on_success, "failed")
        return None

    ext.before("rds", "ModifyDBInstance", before_modify)
    ext.after("rds", "ModifyDBInstance", after_modify)

    # ---- instances created from a source ------------------------------------------------------

    def created(name):
        def after(req, status, body):
            if status != 200:
                return None
            ident, db = instance(req, name)
            if db is None:
                return None
            hold_instance(
                ident,
                db,
                [("creating", 0.0), ("backing-up", 0.0)],
                lambda: None,
                "incompatible-restore",
            )
            return None

        return after

    ext.after("rds", "RestoreDBInstanceToPointInTime", created("TargetDBInstanceIdentifier"))
    ext.after("rds", "RestoreDBInstanceFromDBSnapshot", created("DBInstanceIdentifier"))
    ext.after("rds", "CreateDBInstanceReadReplica", created("DBInstanceIdentifier"))

    # ---- RebootDBInstance ---------------------------------------------------------------------

    def after_reboot(req, status, body):
        if status != 200:
            return None
        ident, db = instance(req, "DBInstanceIdentifier")
        if db is not None:
            hold_instance(ident, db, [("rebooting", 0.0)], lambda: None, "failed")
        return None

    ext.before("rds", "RebootDBInstance", refuse_unless_available)
    ext.after("rds", "RebootDBInstance", after_reboot)

    # ---- CreateDBSnapshot ---------------------------------------------------------------------

    def after_snapshot(req, status, body):
        if status != 200:
            return None
        ident = req.arg("DBSnapshotIdentifier")
        snap = backend(req).database_snapshots.get(ident)
        if snap is None:
            return None

        def enter(s):
            snap.status = s

        def finish(fail):
            snap.status = fail.get("status", "failed") if fail else "available"

        ext.start("rds", "db-snapshot", ident, [("creating", 0.0)], enter, finish)
        return None

    ext.after("rds", "CreateDBSnapshot", after_snapshot)

    # ---- StartExportTask ----------------------------------------------------------------------

    def after_export(req, status, body):
        if status != 200:
            return None
        ident = req.arg("ExportTaskIdentifier")
        task = backend(req).export_tasks.get(ident)
        if task is None:
            return None

        def enter(s):
            task.status = s

        def finish(fail):
            if fail:
                task.status = fail.get("status", "FAILED")
                task.failure_cause = fail.get("cause", "injected failure")
            else:
                task.status = "COMPLETE"
                task.percent_progress = 100

        ext.start(
            "rds", "export-task", ident, [("STARTING", 0.0), ("IN_PROGRESS", 0.0)], enter, finish
        )
        return None

    ext.after("rds", "StartExportTask", after_export)
