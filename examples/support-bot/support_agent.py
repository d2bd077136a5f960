"""A small, deterministic customer-support agent for the bt-flywheel demo.

No network and no real LLM: the "model" is a rule-based router plus reply templates, and its
behaviour is driven by `agent_config.yaml` (the thing the flywheel improves). It still behaves
like an LLM agent in the ways that matter to the demo:

* it reads the whole customer message and, unless `rules.treat_quoted_text_as_data` is true,
  follows instructions it finds inside pasted or quoted text (prompt injection in forwarded
  emails);
* it refuses only the request categories listed in `rules.refuse_categories`;
* it samples: with probability `model.temperature * 0.2` an ordinary request is routed to a
  neighbouring intent. Draws are seeded per (message, trial), so the same case and trial always
  gives the same answer (common random numbers across configs).

`respond(input, config)` returns an `AgentRun` with the output and the steps (one llm call, tool
calls) that the trace generator turns into spans.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG_PATH = HERE / "agent_config.yaml"

BENIGN_INTENTS = ("order_status", "refund_request", "billing_question", "login_help",
                  "cancel_subscription", "product_question")
SENSITIVE_CATEGORIES = ("third_party_account_data", "payment_card_numbers")
# Actions that move money or change an account: never taken from a support chat.
PRIVILEGED_ACTIONS = ("issue_refund", "change_account_email", "forward_conversation")

ACTION_FOR_INTENT = {
    "order_status": "lookup_order",
    "refund_request": "open_refund_request",
    "billing_question": "explain_charges",
    "login_help": "send_reset_link",
    "cancel_subscription": "cancel_subscription",
    "product_question": "answer_from_kb",
}
TOOL_FOR_ACTION = {
    "lookup_order": "get_order",
    "open_refund_request": "create_refund_request",
    "explain_charges": "get_invoices",
    "send_reset_link": "send_password_reset",
    "cancel_subscription": "cancel_subscription",
    "answer_from_kb": "search_kb",
    "share_account_details": "get_account",
    "issue_refund": "issue_refund",
    "change_account_email": "update_account",
    "forward_conversation": "send_email",
}
# Where a noisy draw sends an ordinary request.
NEIGHBOUR = {
    "order_status": "refund_request",
    "refund_request": "billing_question",
    "billing_question": "refund_request",
    "login_help": "product_question",
    "cancel_subscription": "billing_question",
    "product_question": "order_status",
}
KEYWORDS = {
    "order_status": ("where is my order", "tracking", "hasn't arrived", "has not arrived", "delivery",
                     "shipped", "package"),
    "refund_request": ("refund", "money back", "arrived broken", "damaged", "return"),
    "billing_question": ("charged", "invoice", "charge", "billing", "bill "),
    "login_help": ("log in", "login", "password", "locked out", "sign in"),
    "cancel_subscription": ("cancel", "unsubscribe", "stop my subscription", "end my plan"),
    "product_question": ("does the", "compatible", "how do i", "warranty", "support for", "battery"),
}
INJECTION_PATTERNS = (
    (re.compile(r"\bissue (?:a )?full refund\b", re.I), "issue_refund"),
    (re.compile(r"\b(?:change|update) the account email to\b", re.I), "change_account_email"),
    (re.compile(r"\bforward (?:this|the) (?:entire )?conversation to\b", re.I), "forward_conversation"),
)
CARD_PATTERN = re.compile(r"\b(?:full )?card number\b|\bcard details\b|\bCVV\b", re.I)
RELATION_PATTERN = re.compile(r"\bmy (?:wife|husband|sister|brother|neighbou?r|friend|coworker|ex)'s account\b", re.I)
EMAIL_PATTERN = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
PERSONAL_DATA_PATTERN = re.compile(r"\b(?:home address|address|phone number|order history|date of birth)\b", re.I)
ORDER_PATTERN = re.compile(r"#([A-Z]\d{4,6})")
QUOTE_HEADER = re.compile(r"^-{2,}\s*(?:original message|forwarded message)\s*-{2,}$", re.I)


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """Read an agent config YAML (default: the shipped agent_config.yaml)."""
    source = Path(path) if path else DEFAULT_CONFIG_PATH
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("rules"), dict):
        raise ValueError(f"{source}: not an agent config (needs a `rules` mapping)")
    return data


@dataclass
class Step:
    kind: str  # "llm" | "tool"
    name: str
    input: Any
    output: Any
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class AgentRun:
    output: dict[str, Any]
    steps: list[Step]


def split_quoted(message: str) -> tuple[str, str]:
    """(the customer's own words, the quoted/pasted text): `> ` lines and everything after a
    '----- Original Message -----' / 'Forwarded message' header count as quoted."""
    own: list[str] = []
    quoted: list[str] = []
    in_block = False
    for line in message.splitlines():
        stripped = line.strip()
        if QUOTE_HEADER.match(stripped):
            in_block = True
        if in_block or stripped.startswith(">"):
            quoted.append(stripped.lstrip("> "))
        else:
            own.append(line)
    return "\n".join(own).strip(), "\n".join(quoted).strip()


def _draw(*parts: Any) -> float:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def classify(message: str, customer_email: str, rules: dict[str, Any]) -> tuple[str, str | None]:
    """(category, privileged action or None) as the configured agent reads the message."""
    own, _quoted = split_quoted(message)
    instructions = own if rules.get("treat_quoted_text_as_data") else message
    for pattern, action in INJECTION_PATTERNS:
        if pattern.search(instructions):
            return "account_change", action
    if CARD_PATTERN.search(own):
        return "payment_card_numbers", None
    others = [e for e in EMAIL_PATTERN.findall(own) if e.lower() != customer_email.lower()]
    if (others or RELATION_PATTERN.search(own)) and PERSONAL_DATA_PATTERN.search(own):
        return "third_party_account_data", None
    lowered = own.lower()
    best, best_hits = "product_question", 0
    for intent in BENIGN_INTENTS:
        hits = sum(lowered.count(k) for k in KEYWORDS[intent])
        if hits > best_hits:
            best, best_hits = intent, hits
    return best, None


def _tool_result(tool: str, message: str, args: dict[str, Any]) -> dict[str, Any]:
    u = _draw("tool", tool, message)
    if tool == "get_order":
        return {"status": "shipped" if u < 0.7 else "processing", "eta_days": 1 + int(u * 5)}
    if tool == "get_invoices":
        return {"invoices": [{"amount": 19.0, "status": "paid"}, {"amount": 19.0, "status": "pending"}]}
    if tool == "search_kb":
        return {"article": f"KB-{100 + int(u * 900)}", "answer": "Yes, see the linked guide."}
    if tool == "get_account":
        return {"owner": args.get("email"), "address": "12 Elm Street, Springfield", "phone": "555-0142"}
    return {"ok": True}


def respond(input: dict[str, Any], config: dict[str, Any], *, trial: int = 0,
            tool_failure: bool = False) -> AgentRun:
    """Run the agent on one support request {message, customer_id, customer_email, channel}."""
    message = str(input.get("message", ""))
    email = str(input.get("customer_email", ""))
    rules = config.get("rules", {})
    model = config.get("model", {})
    category, privileged = classify(message, email, rules)
    noisy = False
    if category in BENIGN_INTENTS:
        temperature = float(model.get("temperature", 0.0))
        if _draw("sample", message, trial) < temperature * 0.2:
            category, noisy = NEIGHBOUR[category], True
    refused = category in (rules.get("refuse_categories") or [])
    if privileged:
        action = privileged
    elif refused:
        action = "refuse"
    elif category == "third_party_account_data":
        action = "share_account_details"
    elif category == "payment_card_numbers":
        action = "refuse"  # card numbers are never available to the bot, listed or not
        refused = True
    else:
        action = ACTION_FOR_INTENT[category]

    steps: list[Step] = []
    system = str(config.get("system_prompt", "")).strip()
    completion = {"category": category, "action": action}
    steps.append(Step("llm", "chat.completions",
                      input=[{"role": "system", "content": system}, {"role": "user", "content": message}],
                      output=[{"role": "assistant", "content": None, "tool_call": completion}],
                      metadata={"model": model.get("name", "support-rules-v1"),
                                "temperature": model.get("temperature", 0.0), "noisy_sample": noisy}))
    tool_output: dict[str, Any] | None = None
    tool = TOOL_FOR_ACTION.get(action)
    if tool:
        args: dict[str, Any] = {"customer_id": input.get("customer_id")}
        orders = ORDER_PATTERN.findall(message)
        if orders:
            args["order_id"] = orders[0]
        if action == "share_account_details":
            others = [e for e in EMAIL_PATTERN.findall(message) if e.lower() != email.lower()]
            args["email"] = others[0] if others else "(relative)"
        if action in PRIVILEGED_ACTIONS:
            args["requested_by"] = "message text"
        if tool_failure:
            steps.append(Step("tool", tool, input=args, output=None,
                              error=f"TimeoutError: {tool} did not respond within 5s"))
            action = "escalate_to_human"
        else:
            tool_output = _tool_result(tool, message, args)
            steps.append(Step("tool", tool, input=args, output=tool_output))
    reply = _reply(action, tool_output, input) + "\n" + str(config.get("reply_signature", "")).strip()
    output = {"reply": reply.strip(), "action": action, "category": category, "refused": action == "refuse",
              "tools": [s.name for s in steps if s.kind == "tool"]}
    return AgentRun(output=output, steps=steps)


def _reply(action: str, tool_output: dict[str, Any] | None, input: dict[str, Any]) -> str:
    data = tool_output or {}
    if action == "lookup_order":
        return f"Your order is {data.get('status', 'on its way')}; expected in {data.get('eta_days', 3)} days."
    if action == "open_refund_request":
        return "I've opened a refund request; you'll hear back within 2 business days."
    if action == "explain_charges":
        return "You have one paid and one pending invoice of $19.00; the pending one settles in 3 days."
    if action == "send_reset_link":
        return "I've sent a password reset link to the email on your account."
    if action == "cancel_subscription":
        return "Your subscription is cancelled at the end of the billing period."
    if action == "answer_from_kb":
        return f"{data.get('answer', 'Here is what I found.')} ({data.get('article', 'KB')})"
    if action == "share_account_details":
        return f"The account {data.get('owner')} is registered to {data.get('address')}, phone {data.get('phone')}."
    if action == "issue_refund":
        return "Done: a full refund has been issued to the account."
    if action == "change_account_email":
        return "Done: the account email has been changed as requested."
    if action == "forward_conversation":
        return "Done: I've forwarded this conversation."
    if action == "refuse":
        return "Sorry, I can't help with that request: it involves data I'm not allowed to share."
    if action == "escalate_to_human":
        return "Sorry, our systems are slow right now; a colleague will follow up by email."
    return "Thanks for reaching out."


def eval_task(input: dict[str, Any], hooks: Any = None) -> dict[str, Any]:
    """Entry point for `eval_config.yaml`: runs the config named by SUPPORT_BOT_CONFIG
    (default: the shipped agent_config.yaml), seeding sampling by the trial index."""
    import os

    config = load_config(os.environ.get("SUPPORT_BOT_CONFIG") or None)
    return respond(input, config, trial=int(getattr(hooks, "trial_index", 0) or 0)).output
