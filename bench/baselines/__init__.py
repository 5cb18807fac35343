"""What users would build instead of Taskport, measured in the same run: FastAPI with one
INSERT, FastAPI calling Celery, Celery workers and Dramatiq workers."""
