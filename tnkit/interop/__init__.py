"""Conversions to and from other tensor-network libraries."""
