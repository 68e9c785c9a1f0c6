"""The warmer function: one stateless warmer run per scheduled invocation.

Entry points: `lambda_handler.handler` (AWS Lambda, container image: Prophet is over
Lambda's 250 MB zip limit), `python -m mpfn.functions.warmer` (Cloud Run job, Kubernetes
CronJob, cron). Both read the state URL from `MPFN_STATE` and run `mpfn.warm.run_once`.
"""
