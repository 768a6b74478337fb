"""Errors raised by the lake layer. Messages never carry row values, only names."""


class LakeError(RuntimeError):
    """Base class for lake failures."""


class UnknownTableError(LakeError):
    """The logical table name is not in the registry."""


class TableMissingError(LakeError):
    """The table is registered but has not been created yet."""


class SchemaMismatchError(LakeError):
    """Data does not match the table's schema; the message lists the differing columns."""


class ConcurrentWriteError(LakeError):
    """Another writer committed a conflicting change first; the operation can be retried from fresh data."""


class UnsupportedTableError(LakeError):
    """The table uses a Delta feature this backend cannot read correctly (deletion vectors, column mapping)."""
