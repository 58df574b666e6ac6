"""A check shared by the tests: no secret value, nor any base64 form of it, appears in some text."""
import base64

from nasiko_nb.sim.platform import REGISTRY_USER, SECRET_VALUES


def secret_forms(values=SECRET_VALUES, users=(REGISTRY_USER,)) -> set[str]:
    forms = set()
    for value in values:
        forms.add(value)
        for raw in (value, f"{value}:{value}", *(f"{user}:{value}" for user in users)):
            encoded = base64.b64encode(raw.encode()).decode()
            forms |= {encoded, encoded.rstrip("="), base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")}
    return forms


def leaked_in(text: str, values=SECRET_VALUES, users=(REGISTRY_USER,)) -> list[str]:
    """The secret forms found in ``text`` (shortened, so a failing test does not print them whole)."""
    return [form[:6] + "..." for form in secret_forms(values, users) if form in text]
