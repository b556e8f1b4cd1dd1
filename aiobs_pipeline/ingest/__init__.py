"""Readers that turn trace exports of every supported format into canonical span rows."""
