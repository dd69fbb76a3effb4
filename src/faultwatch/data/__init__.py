"""Data layer: readers (`readers`), validation (`validate`), the split (`split`), the stage
(`prepare`). Nothing is imported here, so the serving image can import `data.params` alone."""
