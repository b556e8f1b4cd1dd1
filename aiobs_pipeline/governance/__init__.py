"""Data governance: retention of stored data (`retention.py`) and forgetting one user (`forget.py`).

Plain functions over the warehouse and the landing folders; the Dagster layer (`defs/governance.py`) and the
CLI (`aiobs forget`) call them.
"""
