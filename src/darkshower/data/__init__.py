"""Dataset format: chunked Parquet files plus a JSON manifest (see docs/data-format.md)."""

from darkshower.data.dataset import Dataset, DatasetWriter, open_dataset
from darkshower.data.schema import SCHEMA_VERSION

__all__ = ["Dataset", "DatasetWriter", "open_dataset", "SCHEMA_VERSION"]
