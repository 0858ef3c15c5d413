"""Benchmarks of pybackprop, installed as pybackprop._bench: python -m pybackprop bench."""
