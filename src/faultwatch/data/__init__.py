"""Data layer: readers (`readers`, by format `delimited`, `long_layout`, `ts_format`,
`parquet_format`), multichannel signals (`channels`), validation (`validate`), the split
(`split`), the stage (`prepare`). Nothing is imported here, so the serving image can import
`data.params` alone."""
