"""The fleet simulator on ECS Fargate: a CDK stack (stack.py) and its app (app.py)."""
