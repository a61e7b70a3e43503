"""AlertLake: an astronomical alert broker on a lakehouse (Kafka, Spark + Delta, MLflow, Trino, Airflow)."""

__version__ = "0.1.0"
