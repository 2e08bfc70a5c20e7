"""Imitations of the outside world for tests: an ESP's HTTP API, the paper
sources' web endpoints and an SMTP server, each listening on 127.0.0.1.

They record everything they receive so tests can assert on what Paperboy
actually sent over the wire, and some can be told at runtime to misbehave.
"""
