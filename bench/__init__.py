"""Benchmarks: plain vs integer vs encrypted inference, each writing JSON and a markdown table."""
