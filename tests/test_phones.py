import numpy as np
import pytest

from engine.audio.phones import (
    IS_VOICED,
    NUM_PHONES,
    PHONE_INDEX,
    PHONES,
    SILENCE,
    VISEME_GROUPS,
    VISEME_OF_PHONE,
    VISEMES,
    PhoneError,
    festival_to_phone,
    ipa_to_phones,
    phone_ids,
)


def test_phone_set_is_arpabet_39_plus_silence():
    assert PHONES[0] == SILENCE and NUM_PHONES == 40 and len(set(PHONES)) == 40


def test_every_phone_in_exactly_one_viseme_group():
    members = [p for group in VISEME_GROUPS.values() for p in group]
    assert sorted(members) == sorted(PHONES)
    assert VISEMES == ("silence", "bilabial", "labiodental", "rounded", "open", "other")
    assert [PHONES[i] for i in np.flatnonzero(VISEME_OF_PHONE == VISEMES.index("bilabial"))] == [
        "B",
        "M",
        "P",
    ]
    assert VISEME_OF_PHONE[PHONE_INDEX["F"]] == VISEMES.index("labiodental")
    assert VISEME_OF_PHONE[PHONE_INDEX["UW"]] == VISEMES.index("rounded")
    assert VISEME_OF_PHONE[PHONE_INDEX["AA"]] == VISEMES.index("open")


@pytest.mark.parametrize(
    "ipa, phones",
    [("ˈeɪ", ["EY"]), ("tʃ", ["CH"]), ("dʒ", ["JH"]), ("ɑ̃", ["AA"]), ("ɚ", ["ER"]), ("ts", ["T", "S"]),
     ("mʲ", ["M"]), ("(en)", []), ("ˈiː", ["IY"]), ("ŋ", ["NG"]), ("ʃ", ["SH"]), ("ɾ", ["D"])],
)
def test_ipa_mapping(ipa, phones):
    assert ipa_to_phones(ipa) == phones


def test_unknown_ipa_is_a_clear_error():
    with pytest.raises(PhoneError, match="no phone for IPA symbol"):
        ipa_to_phones("☃")


def test_festival_mapping():
    assert [festival_to_phone(s) for s in ("pau", "ax", "dx", "k", "aa")] == [SILENCE, "AH", "D", "K", "AA"]
    with pytest.raises(PhoneError):
        festival_to_phone("qq")


def test_voicing_and_ids():
    assert IS_VOICED[PHONE_INDEX["B"]] == 1 and IS_VOICED[PHONE_INDEX["P"]] == 0 and IS_VOICED[0] == 0
    assert list(phone_ids(["SIL", "AA", "ZH"])) == [0, 1, 39]
