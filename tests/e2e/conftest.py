"""End-to-end tests drive real ``taskport serve`` processes over HTTP."""
