"""The embedded local platform: the whole system on one machine, wired from template.yaml.

`python -m meshanics_local` (`make run`) or `LocalPlatform(...)` (stack.py). Modules:

* template.py: load the SAM template, translate it offline, resolve intrinsics.
* resources.py: the stateful resources, created in moto (CloudFormation first, service API where needed).
* awsserver.py: moto in server mode, in a process of its own.
* functions.py: functions (code, handler, limits, environment) and their triggers (FilterCriteria matched
  by moto), from the template.
* workers.py: each function in its own worker processes; timeouts, errors, the context object.
* events.py: the Lambda events, in Lambda's and API Gateway's shapes.
* triggers.py: the stream and queue pollers and the schedules that play Lambda's event sources.
* apigateway.py: the REST API read from the template, its authorizers and gateway responses, and
  the API Gateway front.

No business rules live here: the functions and the core do the work, as they do on AWS.
"""
