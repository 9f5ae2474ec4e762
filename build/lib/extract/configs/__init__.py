"""Preset YAML files, importable as extract.configs."""
