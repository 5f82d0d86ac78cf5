#!/usr/bin/env python3
"""Write the seed corpus of ``fuzz_callback.py``: every ``tests/fixtures/*.xml`` plus generated pushes.

    python tests/fuzz/make_corpus.py [CORPUS_DIR]      # default: tests/fuzz/corpus

Seeds are named ``seed-<name>.xml``; files libFuzzer adds to the directory are left alone.
Each seed is a raw request body, which is what the harness feeds to every target.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures"
DEFAULT_CORPUS = HERE / "corpus"


def generated_seeds() -> dict[str, bytes]:
    from app.messages import EVENT_TYPES
    from app.testing import build_push, event_push, text_push

    created = 1718852461
    seeds: dict[str, bytes] = {
        "text": text_push("你好", create_time=created),
        "text-cdata-split": text_push("a]]>b <&> ]]]]>", create_time=created),
        "text-plain-escapes": (
            b"<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
            b"<MsgType>text</MsgType><Content>&lt;&amp;&#20320;&#x597D;</Content><MsgId>1</MsgId></xml>"
        ),
        "text-controls": b"<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
        b"<MsgType>text</MsgType><Content><![CDATA[a\x01b\x0bc\x1f\r\nd]]></Content><MsgId>2</MsgId></xml>",
        "text-whitespace": text_push("  \u3000padded\u00a0 ", create_time=created),
        "text-empty-content": build_push("text", {"Content": "", "MsgId": 11}, create_time=created),
        "event-without-event": build_push("event", {"EventKey": "k"}, create_time=created),
        "text-huge-numbers": build_push("text", {"Content": "x", "MsgId": 10**40}, create_time=10**30),
        "text-bom-declaration": b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?>'
        + text_push("bom", create_time=created),
        "image": build_push("image", {"PicUrl": "http://e.com/p.jpg", "MediaId": "m", "MsgId": 3}, create_time=created),
        "voice": build_push(
            "voice", {"MediaId": "m", "Format": "amr", "Recognition": "r", "MsgId": 4}, create_time=created
        ),
        "video": build_push("video", {"MediaId": "m", "ThumbMediaId": "t", "MsgId": 5}, create_time=created),
        "shortvideo": build_push("shortvideo", {"MediaId": "m", "ThumbMediaId": "t", "MsgId": 6}, create_time=created),
        "location": build_push(
            "location",
            {"Location_X": "23.13", "Location_Y": "113.35", "Scale": 20, "Label": "广州", "MsgId": 7},
            create_time=created,
        ),
        "link": build_push(
            "link", {"Title": "t", "Description": "d", "Url": "http://e.com/", "MsgId": 8}, create_time=created
        ),
        "miniprogrampage": build_push(
            "miniprogrampage",
            {"Title": "t", "AppId": "wx1", "PagePath": "p", "ThumbUrl": "u", "ThumbMediaId": "m", "MsgId": 9},
            create_time=created,
        ),
        "unknown-message": build_push("hologram", {"Beam": "x", "MsgId": 10}, create_time=created),
        "event-pics": (
            b"<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
            b"<MsgType>event</MsgType><Event>pic_weixin</Event><EventKey>k</EventKey><SendPicsInfo><Count>2</Count>"
            b"<PicList><item><PicMd5Sum>a</PicMd5Sum></item><item><PicMd5Sum>b</PicMd5Sum></item></PicList>"
            b"</SendPicsInfo></xml>"
        ),
        "event-mass-finish": (
            b"<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
            b"<MsgType>event</MsgType><Event>MASSSENDJOBFINISH</Event><MsgID>1000001625</MsgID>"
            b"<Status>send success</Status><TotalCount>100</TotalCount><FilterCount>80</FilterCount>"
            b"<SentCount>75</SentCount><ErrorCount>5</ErrorCount><CopyrightCheckResult><Count>1</Count><ResultList>"
            b"<item><ArticleIdx>1</ArticleIdx><AuditState>2</AuditState></item></ResultList>"
            b"<CheckState>2</CheckState></CopyrightCheckResult><ArticleUrlResult><Count>1</Count><ResultList><item>"
            b"<ArticleIdx>1</ArticleIdx><ArticleUrl>u</ArticleUrl></item></ResultList></ArticleUrlResult></xml>"
        ),
        "event-subscribe-msg": (
            b"<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
            b"<MsgType>event</MsgType><Event>subscribe_msg_popup_event</Event><SubscribeMsgPopupEvent><List>"
            b"<TemplateId>t</TemplateId><SubscribeStatusString>accept</SubscribeStatusString>"
            b"<PopupScene>2</PopupScene></List></SubscribeMsgPopupEvent></xml>"
        ),
        "safe-envelope": b"<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt><![CDATA[QUJD]]></Encrypt></xml>",
        "compatible-mode": text_push("compat", create_time=created).replace(
            b"</xml>", b"<Encrypt><![CDATA[QUJD]]></Encrypt></xml>"
        ),
        "doctype-entity": b'<!DOCTYPE xml [<!ENTITY e "x">]><xml><Content>&e;</Content></xml>',
        "doctype-system": b'<!DOCTYPE xml SYSTEM "file:///etc/passwd"><xml/>',
        "comment-and-pi": b'<?xml version="1.0"?><!-- c --><?pi x?>' + text_push("pi", create_time=created),
        "nesting-300": b"<xml>" + b"<n>" * 300 + b"</n>" * 300 + b"</xml>",
        "namespaced": b'<w:xml xmlns:w="urn:w"><w:ToUserName>gh</w:ToUserName></w:xml>',
        "utf-16": text_push("utf16", create_time=created).decode().encode("utf-16"),
    }
    for name in sorted(EVENT_TYPES):
        seeds[f"event-{name}"] = event_push(name, {"EventKey": "k"}, create_time=created)
    return seeds


def write_corpus(directory: Path = DEFAULT_CORPUS) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted(FIXTURES.glob("*.xml")):
        (directory / f"seed-fixture-{path.stem}.xml").write_bytes(path.read_bytes())
        count += 1
    for name, body in generated_seeds().items():
        (directory / f"seed-{name}.xml").write_bytes(body)
        count += 1
    return count


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CORPUS
    print(f"wrote {write_corpus(target)} seeds to {target}")
