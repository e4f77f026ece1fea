"""Locust users that loop next → submit like annotators on the ranking page, one API token each.

Started by `benchmarks/assignment_load.py`, which sets BENCH_TOKENS (comma-separated API tokens, one per
simulated annotator) and BENCH_PROJECT_ID. Runnable on its own against any server holding that data:

    BENCH_TOKENS=t1,t2 BENCH_PROJECT_ID=1 locust -f benchmarks/locustfile.py --headless -u 2 -r 2 \
        -t 30s --host http://127.0.0.1:8000
"""

import os
import random

import gevent
from locust import FastHttpUser, constant, task
from locust.exception import StopUser

TOKENS = [token for token in os.environ.get("BENCH_TOKENS", "").split(",") if token]
PROJECT_ID = int(os.environ.get("BENCH_PROJECT_ID", "0"))
# "rank" loops next → submit; "progress" loops the cheapest authenticated call, GET progress (token,
# project, one count): the floor that any endpoint of this API pays, for comparison.
MODE = os.environ.get("BENCH_MODE", "rank")
# Open loop (assignment_load.py --open-rate): many annotators, each thinking an exponential time between
# items, so that together they offer BENCH_RATE items a second as Poisson arrivals, whatever the server's
# answer times (as long as those stay well under the think time).
RATE = float(os.environ.get("BENCH_RATE") or 0)
USERS = max(1, int(os.environ.get("BENCH_USERS") or len(TOKENS) or 1))
# Each simulated annotator takes a token of its own: two users on one token would share one lease.
_unused_tokens = list(reversed(TOKENS))


class Annotator(FastHttpUser):
    """One annotator: takes the next item and submits a ranking of its answers straight away."""

    # Closed loop by default, no think time: the server's capacity, not a realistic pace (people take ~20 s
    # an item). Open loop: an exponential think time with mean USERS / RATE seconds.
    wait_time = (lambda self: random.expovariate(RATE / USERS)) if RATE else constant(0)

    def on_start(self) -> None:
        if not _unused_tokens:
            raise StopUser()  # more users than tokens (or BENCH_TOKENS unset)
        token = _unused_tokens.pop()
        self.headers = {"Authorization": f"Token {token}"}
        if RATE:
            # Spread the first arrivals over one mean think time, rather than all users at once at spawn.
            gevent.sleep(random.uniform(0, USERS / RATE))

    @task
    def rank_one_item(self) -> None:
        if MODE == "progress":
            self.client.get(f"/api/projects/{PROJECT_ID}/progress/", headers=self.headers, name="progress")
            return
        with self.client.post(
            f"/api/projects/{PROJECT_ID}/next/", headers=self.headers, name="next", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"next answered {response.status_code}: {response.text[:200]}")
                return
            assignment = response.json()["assignment"]
            if assignment is None:
                response.success()
                raise StopUser()
        answer_ids = [answer["id"] for answer in assignment["answers"]]
        random.shuffle(answer_ids)
        body = {"order": [[answer_id] for answer_id in answer_ids], "seconds_spent": 1.0}
        with self.client.post(
            f"/api/assignments/{assignment['id']}/submit/",
            json=body,
            headers=self.headers,
            name="submit",
            catch_response=True,
        ) as response:
            if response.status_code != 201:
                response.failure(f"submit answered {response.status_code}: {response.text[:200]}")
