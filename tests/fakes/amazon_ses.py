"""An imitation of Amazon SES v2's bulk send (``POST /v2/email/outbound-bulk-emails``).

anymail's Amazon SES backend calls it through boto3 with ``endpoint_url`` pointed here. It
records every call it reads and answers like SES: one result per bulk entry, in order
(``{"Status": "SUCCESS", "MessageId": …}``). Tests script the next answers::

    ses = FakeSES().start()
    ses.script(DROP)                                   # read the call, then close the connection
    ses.script(Refusal(429, "TooManyRequestsException"))
    ses.script(lambda entries, results: results)       # change each entry's result
"""

import json
import threading
from collections import deque
from dataclasses import dataclass

from .http import BackgroundHTTPServer, QuietHandler

DROP = "drop"


@dataclass(frozen=True)
class Refusal:
    """An error answer for the whole call, as SES sends one (the type in ``x-amzn-ErrorType``)."""

    status: int
    error_type: str


class SESHandler(QuietHandler):
    def do_POST(self):
        ses = self.server.owner
        if self.path != "/v2/email/outbound-bulk-emails":
            return self.reply(404, b'{"message": "not found"}')
        call = json.loads(self.read_body() or b"{}")
        answer = ses.take(call)
        if answer == DROP:
            self.close_connection = True
            self.connection.shutdown(2)  # read, maybe taken, never answered
            return
        if isinstance(answer, Refusal):
            body = json.dumps({"message": answer.error_type}).encode()
            return self.reply(answer.status, body, headers={"x-amzn-ErrorType": answer.error_type})
        self.reply(200, json.dumps({"BulkEmailEntryResults": answer}).encode())


class FakeSES(BackgroundHTTPServer):
    handler_class = SESHandler

    def __init__(self):
        super().__init__()
        self.calls = []
        self.answers = []  # the entries' results of each call answered 200, in the order of ``calls``
        self._lock = threading.Lock()
        self._scripted = deque()

    def script(self, *answers):
        """Answer the next calls with ``answers``, one each; then accept every entry."""
        with self._lock:
            self._scripted.extend(answers)

    def take(self, call):
        with self._lock:
            self.calls.append(call)
            number = len(self.calls)
            answer = self._scripted.popleft() if self._scripted else None
        if answer == DROP or isinstance(answer, Refusal):
            return answer
        entries = call.get("BulkEmailEntries", [])
        results = [{"Status": "SUCCESS", "MessageId": f"ses-{number}-{n}"} for n in range(len(entries))]
        results = answer(entries, results) if answer is not None else results
        with self._lock:
            self.answers.append((entries, results))
        return results

    def delivered(self):
        """Every address of an entry answered SUCCESS: the messages SES took, in order."""
        with self._lock:
            answered = list(self.answers)
        return [address for entries, results in answered for entry, result in zip(entries, results)
                if result.get("Status") == "SUCCESS" for address in entry["Destination"]["ToAddresses"]]

    def recipients(self):
        """Every address the calls read carried, in order (one per bulk entry)."""
        return [address for call in self.calls for entry in call.get("BulkEmailEntries", [])
                for address in entry["Destination"]["ToAddresses"]]
