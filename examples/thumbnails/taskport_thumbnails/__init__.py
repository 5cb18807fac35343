"""Example task kinds for Taskport: ``thumbnails.resize`` and ``thumbnails.palette``."""
