"""Kubeflow Pipelines REST client, cron translation and cluster-resource rendering."""
