"""Data layer: readers for the supported formats, validation, the stratified split."""

from faultwatch.data.readers import read_source
from faultwatch.data.split import split_stratified
from faultwatch.data.validate import validate_signals

__all__ = ["read_source", "split_stratified", "validate_signals"]
