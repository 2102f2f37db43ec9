"""Priority queues of the policy's ``queues:`` section: engines (SQLite, Redis) and the job API's pieces.

``router.submit`` puts a job here; ``policyrouter.worker.Worker`` drains it through the router.
"""
