"""Speed and memory benchmark of the FAQ matcher against a plain char-TF-IDF baseline.

Run from the repository root::

    .venv/bin/python tests/bench/bench_matcher.py            # JSUG corpus + 20,000 generated entries
    .venv/bin/python tests/bench/bench_matcher.py --quick    # 2,000 generated entries (smoke test)

This is a report, not a test: it exits 0 even when a target is missed, and 1 only when a
measurement fails. Every (corpus, engine) pair is measured in a fresh child process (the script
re-invokes itself with ``--one CORPUS --engine ENGINE``), so the RSS figures of one index never
include another. The children run one after the other, never in parallel.

Figures, per corpus and engine:
- index build: for the matcher ``Analyzer()`` (Sudachi dictionary) + ``build_index`` — what
  ``open_index`` does at start-up after loading the corpus; for the baseline ``CharTfidfBaseline``;
- latency of each ``match(index, q)`` / ``baseline.rank(q)`` call (``time.perf_counter_ns``), after
  20 untimed warm-up queries that are not in the timed list; p50, p99 and queries per second
  (one thread, calls back to back);
- RSS before the build, its increase over the build (psutil, after ``gc.collect()``) and the
  peak RSS of the loaded process (``getrusage(RUSAGE_SELF).ru_maxrss`` after build and queries),
  which the 250 MB target is checked against. RSS counts the pages of Sudachi's memory-mapped
  dictionary the analyser has touched; the "file-backed" row shows how much of it is such pages.

The generated corpus is deterministic (``random.Random(seed)``): topics from eight domains,
actions and conditions combined by question and answer templates; its queries are paraphrases of
its own entries with dropped words, changed particles, hiragana spellings and out-of-vocabulary
words. The module can be imported (``generate_corpus``, ``generate_queries``) with the repository
root on ``sys.path``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

DEV_QUESTIONS = REPO_ROOT / "tests" / "data" / "dev_questions.jsonl"
RESULT_MARK = "BENCH-RESULT "
WARMUP = 20
GEN_QUERIES = 500
FULL_ENTRIES = 20_000
QUICK_ENTRIES = 2_000
SEED = 20240601

TARGET_JSUG_P99_MS = 2.0
TARGET_GEN_P99_MS = 10.0
TARGET_GEN_BUILD_S = 10.0
TARGET_RSS_MB = 250.0

# --------------------------------------------------------------------------------------------
# The generated corpus
# --------------------------------------------------------------------------------------------

# 8 domains x 25 topics. "word/reading" gives the hiragana a member may type instead.
DOMAIN_TOPICS: dict[str, str] = {
    "行政手続き": (
        "住民票/じゅうみんひょう 印鑑登録証明書/いんかんとうろくしょうめいしょ 戸籍謄本/こせきとうほん マイナンバーカード 転入届/てんにゅうとどけ "
        "転出届/てんしゅつとどけ 国民健康保険証/こくみんけんこうほけんしょう 児童手当/じどうてあて 粗大ごみの収集/そだいごみのしゅうしゅう "
        "犬の登録/いぬのとうろく 婚姻届/こんいんとどけ 出生届/しゅっしょうとどけ 納税証明書/のうぜいしょうめいしょ 課税証明書/かぜいしょうめいしょ "
        "固定資産税/こていしさんぜい 軽自動車税/けいじどうしゃぜい 国民年金/こくみんねんきん 介護保険/かいごほけん 保育園の入園/ほいくえんのにゅうえん "
        "図書館カード 駐輪場の定期利用/ちゅうりんじょうのていきりよう パスポート 住居表示/じゅうきょひょうじ 水道の使用開始/すいどうのしようかいし "
        "期日前投票/きじつまえとうひょう"
    ),
    "人事・労務": (
        "社員証/しゃいんしょう 有給休暇/ゆうきゅうきゅうか 育児休業/いくじきゅうぎょう 介護休暇/かいごきゅうか 扶養控除/ふようこうじょ "
        "健康診断/けんこうしんだん 住所変更届/じゅうしょへんこうとどけ 給与明細/きゅうよめいさい 源泉徴収票/げんせんちょうしゅうひょう "
        "年末調整/ねんまつちょうせい 通勤手当/つうきんてあて 時間外勤務/じかんがいきんむ 在宅勤務/ざいたくきんむ 慶弔休暇/けいちょうきゅうか "
        "退職手続き/たいしょくてつづき 雇用保険/こようほけん 社会保険/しゃかいほけん 副業/ふくぎょう 社内研修/しゃないけんしゅう "
        "人事評価/じんじひょうか 昇格試験/しょうかくしけん 福利厚生/ふくりこうせい 社宅/しゃたく 名刺/めいし 身上異動届/しんじょういどうとどけ"
    ),
    "経理・購買": (
        "請求書/せいきゅうしょ 経費精算/けいひせいさん 領収書/りょうしゅうしょ 立替金/たてかえきん 出張旅費/しゅっちょうりょひ "
        "仮払金/かりばらいきん 支払依頼/しはらいいらい 見積書/みつもりしょ 発注書/はっちゅうしょ 納品書/のうひんしょ "
        "取引先登録/とりひきさきとうろく 法人カード 予算申請/よさんしんせい 固定資産の登録/こていしさんのとうろく 振込先口座/ふりこみさきこうざ "
        "源泉税/げんせんぜい インボイス 検収/けんしゅう 前払金/まえばらいきん 交際費/こうさいひ 会議費/かいぎひ 切手/きって "
        "収入印紙/しゅうにゅういんし 購買申請/こうばいしんせい 支払予定日/しはらいよていび"
    ),
    "情報システム": (
        "パスワード VPN接続 メールアカウント ノートPC 共有フォルダ 多要素認証/たようそにんしょう Wi-Fi プリンター "
        "ソフトウェアのインストール USBメモリ 社内ポータル チャットツール ウェブ会議 スマートフォンの貸与 アクセス権限 メーリングリスト "
        "ウイルス対策ソフト バックアップ クラウドストレージ 業務システムのアカウント 内線電話/ないせんでんわ 電子署名/でんししょめい "
        "ヘルプデスク 迷惑メール 画面ロック"
    ),
    "施設・総務": (
        "会議室/かいぎしつ 駐車場/ちゅうしゃじょう ロッカー 入館証/にゅうかんしょう 来客受付/らいきゃくうけつけ 郵便物/ゆうびんぶつ "
        "宅配便/たくはいびん 備品/びひん 文房具/ぶんぼうぐ 名札/なふだ 社用車/しゃようしゃ 喫煙所/きつえんじょ 空調/くうちょう "
        "照明/しょうめい 鍵/かぎ 防災訓練/ぼうさいくんれん 忘れ物/わすれもの 座席予約/ざせきよやく 応接室/おうせつしつ 社内便/しゃないびん "
        "複合機/ふくごうき 清掃/せいそう 館内放送/かんないほうそう 休憩室/きゅうけいしつ 自動販売機/じどうはんばいき"
    ),
    "会員・イベント": (
        "会員登録/かいいんとうろく 勉強会/べんきょうかい 参加申込/さんかもうしこみ メールマガジン 年会費/ねんかいひ 会員情報/かいいんじょうほう "
        "登壇応募/とうだんおうぼ 懇親会/こんしんかい スポンサー 発表資料/はっぴょうしりょう 動画アーカイブ 会場案内/かいじょうあんない "
        "キャンセル待ち 参加証明書/さんかしょうめいしょ アンケート 運営スタッフ 分科会/ぶんかかい 講師依頼/こうしいらい 問い合わせフォーム "
        "会員ページ ログインID 退会/たいかい 招待メール イベントカレンダー 参加費/さんかひ"
    ),
    "金融・保険": (
        "口座開設/こうざかいせつ キャッシュカード 通帳/つうちょう 振込手数料/ふりこみてすうりょう 定期預金/ていきよきん 住宅ローン "
        "クレジットカード 暗証番号/あんしょうばんごう 口座振替/こうざふりかえ 外貨預金/がいかよきん ネットバンキング "
        "残高証明書/ざんだかしょうめいしょ 保険証券/ほけんしょうけん 保険金の請求/ほけんきんのせいきゅう 契約者の名義/けいやくしゃのめいぎ "
        "解約返戻金/かいやくへんれいきん 海外送金/かいがいそうきん 届出印/とどけでいん 相続手続き/そうぞくてつづき 口座の凍結/こうざのとうけつ "
        "利用明細/りようめいさい ポイント 年会費の引き落とし/ねんかいひのひきおとし 入出金明細/にゅうしゅっきんめいさい 利用限度額/りようげんどがく"
    ),
    "通販・サービス": (
        "注文/ちゅうもん 配送先/はいそうさき 返品/へんぴん 交換/こうかん 返金/へんきん 会員ランク クーポン ギフト包装 定期便/ていきびん "
        "支払い方法/しはらいほうほう 購入履歴/こうにゅうりれき 在庫/ざいこ 予約商品/よやくしょうひん 配達日時/はいたつにちじ 送料/そうりょう "
        "保証書/ほしょうしょ 修理受付/しゅうりうけつけ 取扱説明書/とりあつかいせつめいしょ アカウント メールアドレス お気に入りリスト レビュー "
        "店舗受け取り/てんぽうけとり 分割払い/ぶんかつはらい 会員カード"
    ),
}

# action noun: (verb form used before "には", hiragana reading)
ACTIONS: dict[str, tuple[str, str]] = {
    "申請": ("申請する", "しんせい"), "変更": ("変更する", "へんこう"), "取消": ("取り消す", "とりけし"),
    "確認": ("確認する", "かくにん"), "再発行": ("再発行する", "さいはっこう"), "停止": ("停止する", "ていし"),
    "更新": ("更新する", "こうしん"), "登録": ("登録する", "とうろく"), "解約": ("解約する", "かいやく"),
    "返却": ("返却する", "へんきゃく"), "予約": ("予約する", "よやく"), "延長": ("延長する", "えんちょう"),
    "提出": ("提出する", "ていしゅつ"), "受け取り": ("受け取る", "うけとり"), "利用": ("利用する", "りよう"),
    "修正": ("修正する", "しゅうせい"), "照会": ("照会する", "しょうかい"), "申し込み": ("申し込む", "もうしこみ"),
    "廃止": ("廃止する", "はいし"), "移行": ("移行する", "いこう"), "発行": ("発行する", "はっこう"),
    "設定": ("設定する", "せってい"), "解除": ("解除する", "かいじょ"), "承認": ("承認する", "しょうにん"),
}

DOMAIN_ACTIONS: dict[str, str] = {
    "行政手続き": "申請 発行 再発行 変更 取消 確認 提出 受け取り 照会 申し込み 廃止 予約",
    "人事・労務": "申請 変更 取消 確認 提出 登録 更新 延長 再発行 修正 照会 申し込み",
    "経理・購買": "提出 申請 修正 取消 確認 登録 変更 発行 再発行 照会 承認 受け取り",
    "情報システム": "変更 設定 解除 停止 再発行 登録 申請 利用 更新 移行 確認 延長",
    "施設・総務": "予約 取消 延長 利用 申請 変更 返却 受け取り 確認 登録 停止 照会",
    "会員・イベント": "登録 申し込み 取消 変更 確認 停止 更新 再発行 照会 受け取り 提出 解除",
    "金融・保険": "申し込み 変更 解約 停止 再発行 確認 登録 解除 照会 発行 更新 延長",
    "通販・サービス": "変更 取消 確認 申し込み 停止 登録 解約 受け取り 延長 修正 予約 発行",
}

# Each reads naturally followed by "、" (question) and by "は" / "も" (answer).
CONDITIONS: tuple[str, ...] = (
    "代理人の場合", "海外から", "締め切り後に", "土日祝日に", "スマートフォンから", "引っ越した後に", "退職後に",
    "入社前に", "名前が変わった場合", "本人確認書類がない場合", "期限が切れた場合", "急ぎの場合", "オンラインで",
    "郵送で", "家族の分の場合", "複数件をまとめる場合", "初めての場合", "在宅勤務中に", "休職中に", "外国籍の場合",
    "紛失した場合", "夜間に", "未成年の場合", "法人の場合",
)

DEPARTMENTS: dict[str, tuple[str, ...]] = {
    "行政手続き": ("市民課", "税務課", "保険年金課", "子育て支援課", "各支所の窓口"),
    "人事・労務": ("人事部", "労務課", "給与厚生課", "各部署の人事担当"),
    "経理・購買": ("経理部", "購買課", "財務課", "経理センター"),
    "情報システム": ("情報システム部", "ITヘルプデスク", "セキュリティ管理室", "システム運用課"),
    "施設・総務": ("総務部", "施設管理課", "受付センター", "庶務課"),
    "会員・イベント": ("事務局", "イベント運営チーム", "会員サービス窓口", "広報委員会"),
    "金融・保険": ("お客さまセンター", "各支店の窓口", "ローンセンター", "契約サービス課"),
    "通販・サービス": ("カスタマーサポート", "お客様相談室", "配送センター", "会員サービスデスク"),
}

PORTALS: dict[str, tuple[str, ...]] = {
    "行政手続き": ("市の電子申請サービス", "マイナポータル", "市のホームページ"),
    "人事・労務": ("人事ポータル", "勤怠管理システム", "社内申請システム"),
    "経理・購買": ("経費精算システム", "購買システム", "社内申請システム"),
    "情報システム": ("ITサービスポータル", "セルフサービス画面", "社内ポータル"),
    "施設・総務": ("施設予約システム", "総務ポータル", "社内申請システム"),
    "会員・イベント": ("会員ページ", "イベント申込サイト", "問い合わせフォーム"),
    "金融・保険": ("インターネットバンキング", "公式アプリ", "会員専用サイト"),
    "通販・サービス": ("マイページ", "公式アプリ", "注文履歴画面"),
}

DOCUMENTS: dict[str, tuple[str, ...]] = {
    "行政手続き": ("本人確認書類", "委任状", "印鑑", "マイナンバーカード", "手数料"),
    "人事・労務": ("所定の申請書", "上長の承認", "社員証", "証明書類の写し"),
    "経理・購買": ("領収書の原本", "上長の承認", "取引先の請求書", "稟議番号"),
    "情報システム": ("社員番号", "上長の承認", "端末の管理番号", "申請番号"),
    "施設・総務": ("社員証", "利用申請書", "来訪者名簿", "部署コード"),
    "会員・イベント": ("会員番号", "登録済みのメールアドレス", "申込番号", "会社名"),
    "金融・保険": ("本人確認書類", "届出印", "通帳", "キャッシュカード", "証券番号"),
    "通販・サービス": ("注文番号", "会員ID", "購入時のレシート", "保証書"),
}

QUESTION_TEMPLATES: tuple[str, ...] = (
    "{topic}の{action}方法を教えてください。",
    "{topic}を{verb}にはどうすればいいですか？",
    "{topic}の{action}はどこで手続きできますか？",
    "{topic}の{action}に必要な書類は何ですか？",
    "{topic}の{action}にはどのくらい時間がかかりますか？",
    "{topic}の{action}をしたいのですが、手順を教えてください。",
    "{topic}の{action}はできますか？",
)

LEAD_SENTENCES: tuple[str, ...] = (
    "{topic}の{action}は、{dept}で受け付けています。",
    "{topic}の{action}は、{portal}から手続きできます。",
    "{topic}の{action}をご希望の方は、{portal}の申請画面から手続きしてください。",
    "{topic}の{action}は、{dept}の窓口または{portal}でお手続きください。",
)
CONDITION_SENTENCES: tuple[str, ...] = (
    "{cond}は、{doc}をご用意のうえ{dept}へお申し出ください。",
    "{cond}は通常の手続きと異なりますので、事前に{dept}へご相談ください。",
    "{cond}も手続きできますが、{doc}の提出が必要です。",
)
EXTRA_SENTENCES: tuple[str, ...] = (
    "手続きには{doc}が必要です。",
    "受付時間は平日{h1}時から{h2}時までです。",
    "処理には通常{days}営業日ほどかかります。",
    "手数料は{fee}円です。",
    "手数料はかかりません。",
    "詳しくは{dept}（内線{ext}）までお問い合わせください。",
    "{month}月末までに手続きを済ませてください。",
    "完了すると、登録のメールアドレスに通知が届きます。",
)

# Words a member adds that no entry contains.
OOV_WORDS: tuple[str, ...] = (
    "至急", "ちなみに", "なるはや", "ぶっちゃけ", "上司に言われて", "asap", "マジで", "ググってもわからない",
    "すみません", "よろしく", "てか", "先輩いわく", "今月中に", "ワイ", "かなり困ってます",
)


def _topics() -> list[tuple[str, str, str | None]]:
    """(domain, topic, hiragana reading or None) for the 200 topics."""
    rows: list[tuple[str, str, str | None]] = []
    for domain, spec in DOMAIN_TOPICS.items():
        for item in spec.split():
            word, _, reading = item.partition("/")
            rows.append((domain, word, reading or None))
    return rows


def _triples() -> list[tuple[int, str, str | None]]:
    """Every (topic number, action, condition or None) the corpus may hold, in a fixed order."""
    out: list[tuple[int, str, str | None]] = []
    for number, (domain, _, _) in enumerate(_topics()):
        for action in DOMAIN_ACTIONS[domain].split():
            for cond in (None, *CONDITIONS):
                out.append((number, action, cond))
    return out


def generate_corpus(n: int, seed: int = SEED) -> list[dict[str, Any]]:
    """``n`` FAQ entries (dicts with id, category, question, answer, alternates, and the private
    keys ``_topic``, ``_action``, ``_cond`` the query generator uses). Deterministic in ``seed``."""
    rng = random.Random(seed)
    topics = _topics()
    triples = _triples()
    if n > len(triples):
        raise ValueError(f"at most {len(triples)} distinct entries can be generated, not {n}")
    chosen = sorted(rng.sample(range(len(triples)), n))
    entries: list[dict[str, Any]] = []
    for number, which in enumerate(chosen, start=1):
        topic_no, action, cond = triples[which]
        domain, topic, _ = topics[topic_no]
        verb = ACTIONS[action][0]
        prefix = f"{cond}、" if cond else ""
        templates = rng.sample(QUESTION_TEMPLATES, 3)
        question = prefix + templates[0].format(topic=topic, action=action, verb=verb)
        alternates = [prefix + t.format(topic=topic, action=action, verb=verb) for t in templates[1 : 1 + rng.randint(0, 2)]]
        fill = {
            "topic": topic,
            "action": action,
            "cond": cond,
            "dept": rng.choice(DEPARTMENTS[domain]),
            "portal": rng.choice(PORTALS[domain]),
            "doc": rng.choice(DOCUMENTS[domain]),
            "h1": rng.choice((8, 9, 10)),
            "h2": rng.choice((16, 17, 18, 19)),
            "days": rng.randint(2, 10),
            "fee": rng.choice((200, 300, 350, 450, 500, 1000)),
            "ext": rng.randint(1000, 9999),
            "month": rng.randint(1, 12),
        }
        sentences = [rng.choice(LEAD_SENTENCES)]
        if cond:
            sentences.append(rng.choice(CONDITION_SENTENCES))
        extras = rng.sample(EXTRA_SENTENCES, rng.randint(1 if not cond else 0, 4 - len(sentences)))
        if "手数料は{fee}円です。" in extras and "手数料はかかりません。" in extras:
            extras.remove("手数料はかかりません。")
        sentences += extras
        if len(sentences) < 2:
            sentences.append(EXTRA_SENTENCES[0])
        entries.append(
            {
                "id": f"gen-{number:05d}",
                "category": domain,
                "question": question,
                "answer": "".join(s.format(**fill) for s in sentences),
                "alternates": alternates,
                "_topic": topic_no,
                "_action": action,
                "_cond": cond,
            }
        )
    return entries


def _noisy_query(rng: random.Random, topic: str, reading: str | None, action: str, cond: str | None) -> str:
    """A member's paraphrase of one entry: dropped words, other particles, kana, stray words."""
    verb, action_reading = ACTIONS[action]
    t = reading if reading and rng.random() < 0.25 else topic
    a = action_reading if rng.random() < 0.2 else action
    particle = rng.choice(("の", "の", "を", "は", "って", "", " "))
    style = rng.choice(("keywords", "casual", "polite", "verb"))
    if rng.random() < 0.12:  # the action dropped
        body = t + rng.choice(("について知りたい", "ってどうなってますか", "のこと教えて", "について教えてください"))
    elif style == "keywords":
        body = f"{t} {a}"
    elif style == "casual":
        body = t + particle + a + rng.choice(("ってどうやるの", "したい", "のやり方", "できる？", "どこでやるの"))
    elif style == "polite":
        body = t + particle + a + rng.choice(("の方法を教えていただけますか", "について伺いたいです", "の手続きを知りたいです", "は可能でしょうか"))
    else:
        body = t + rng.choice(("を", "が", "って")) + verb + "には" + rng.choice(("？", "どうすれば", "どこに聞けばいい？"))
    if cond and rng.random() < 0.6:  # otherwise the condition is dropped
        c = cond.replace("場合", rng.choice(("場合", "とき", "時"))) if cond.endswith("場合") else cond
        body = rng.choice((f"{c}、{body}", f"{c} {body}", f"{body}（{c}）"))
    if rng.random() < 0.3:
        word = rng.choice(OOV_WORDS)
        body = f"{word} {body}" if rng.random() < 0.5 else f"{body} {word}"
    return body


def generate_queries(entries: list[dict[str, Any]], n: int, seed: int = SEED) -> list[dict[str, Any]]:
    """``n`` queries ``{"query", "expected": [id]}`` made from randomly chosen entries."""
    rng = random.Random(seed + 1)
    topics = _topics()
    queries = []
    for _ in range(n):
        entry = rng.choice(entries)
        _, topic, reading = topics[entry["_topic"]]
        text = _noisy_query(rng, topic, reading, entry["_action"], entry["_cond"])
        queries.append({"query": text, "expected": [entry["id"]]})
    return queries


def write_generated(directory: Path, n: int, seed: int = SEED) -> dict[str, Any]:
    """Write ``gen.jsonl`` (the corpus) and ``gen_queries.json`` (warm-up + timed) to ``directory``."""
    started = time.perf_counter()
    entries = generate_corpus(n, seed)
    queries = generate_queries(entries, WARMUP + GEN_QUERIES, seed)
    corpus_path = directory / "gen.jsonl"
    with corpus_path.open("w", encoding="utf-8") as out:
        for entry in entries:
            public = {k: v for k, v in entry.items() if not k.startswith("_")}
            out.write(json.dumps(public, ensure_ascii=False) + "\n")
    (directory / "gen_queries.json").write_text(
        json.dumps({"warmup": [q["query"] for q in queries[:WARMUP]], "timed": queries[WARMUP:]}, ensure_ascii=False),
        encoding="utf-8",
    )
    return {
        "entries": len(entries),
        "seconds": time.perf_counter() - started,
        "bytes": corpus_path.stat().st_size,
        "path": str(corpus_path),
    }


# --------------------------------------------------------------------------------------------
# One measurement (child process)
# --------------------------------------------------------------------------------------------


def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _shared_bytes() -> int | None:
    """Resident file-backed pages (Linux), e.g. the touched part of Sudachi's mmapped dictionary."""
    import psutil

    return getattr(psutil.Process().memory_info(), "shared", None)


def _peak_rss_bytes() -> int:
    try:
        import resource
    except ImportError:  # not Unix: psutil's peak working set where it has one
        import psutil

        info = psutil.Process().memory_info()
        return int(getattr(info, "peak_wset", info.rss))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return float("nan")
    position = (len(sorted_values) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def measure(corpus_name: str, engine: str, data_dir: Path | None, entries: int) -> dict[str, Any]:
    from bot.faq.corpus import load_corpus
    from bot.settings import Settings

    code = _code_state()
    settings = Settings()
    generation: dict[str, Any] | None = None
    if corpus_name == "jsug":
        source = settings.faq_dir
        timed = _read_jsonl(DEV_QUESTIONS)
    else:
        if data_dir is None or not (data_dir / "gen.jsonl").exists():
            data_dir = Path(tempfile.mkdtemp(prefix="bench_matcher_"))
            generation = write_generated(data_dir, entries)
        source = data_dir / "gen.jsonl"
        spec = json.loads((data_dir / "gen_queries.json").read_text(encoding="utf-8"))
        timed = spec["timed"]

    started = time.perf_counter()
    corpus = load_corpus(source, settings.faq_dir)
    load_s = time.perf_counter() - started
    if corpus_name == "jsug":
        phrasings = [text for e in corpus.entries for text in (e.question, *e.alternates)]
        warmup = phrasings[:: max(1, len(phrasings) // WARMUP)][:WARMUP]
    else:
        warmup = spec["warmup"]
    queries = [row["query"] for row in timed]
    expected = [list(row.get("expected") or []) for row in timed]

    if engine == "matcher":
        from bot.faq.index import build_index
        from bot.faq.matcher import match
        from bot.faq.semantic import load_encoder
        from bot.text.tokens import Analyzer
    else:
        from tests.bench.baselines import CharTfidfBaseline

    gc.collect()
    rss_before = _rss_bytes()
    analyzer_s = None
    rows = None
    semantic = False
    started_ns = time.perf_counter_ns()
    if engine == "matcher":
        analyzer = Analyzer()
        analyzer_s = (time.perf_counter_ns() - started_ns) / 1e9
        # The semantic view as the assistant has it on the JSUG corpus (embeddings read from the
        # cache after the first run); 20,000 generated entries would take minutes to embed.
        encoder = load_encoder() if corpus_name == "jsug" and settings.matcher.semantic else None
        index = build_index(corpus, settings.matcher, analyzer, encoder=encoder, cache_dir=settings.cache_dir)
        semantic = index.semantic is not None
        rows = len(index.variant_texts)
        call: Callable[[str], Any] = lambda q: match(index, q)  # noqa: E731
        ranked: Callable[[Any], list[str]] = lambda r: r.ranked  # noqa: E731
    else:
        baseline = CharTfidfBaseline(corpus)
        call = baseline.rank
        ranked = lambda r: r  # noqa: E731
    build_s = (time.perf_counter_ns() - started_ns) / 1e9
    gc.collect()
    rss_built = _rss_bytes()

    for q in warmup:
        call(q)
    latencies: list[int] = []
    slow: list[bool] = []
    tops: list[list[str]] = []
    loop_started = time.perf_counter_ns()
    for q in queries:
        t0 = time.perf_counter_ns()
        result = call(q)
        t1 = time.perf_counter_ns()
        latencies.append(t1 - t0)
        tops.append(ranked(result)[:10])
        slow.append(engine == "matcher" and _took_slow_path(q, result))
    loop_ns = time.perf_counter_ns() - loop_started
    rss_after = _rss_bytes()
    shared_after = _shared_bytes()
    peak = max(_peak_rss_bytes(), rss_after)

    scored = [(top, exp) for top, exp in zip(tops, expected, strict=True) if exp]
    hit1 = sum(1 for top, exp in scored if top[:1] and top[0] in exp)
    hit10 = sum(1 for top, exp in scored if set(top) & set(exp))
    ms = sorted(v / 1e6 for v in latencies)
    fast_ms = sorted(v / 1e6 for v, s in zip(latencies, slow, strict=True) if not s)
    slow_ms = sorted(v / 1e6 for v, s in zip(latencies, slow, strict=True) if s)
    return {
        "fast_p99_ms": _percentile(fast_ms, 99) if fast_ms else None,
        "slow_p99_ms": _percentile(slow_ms, 99) if slow_ms else None,
        "slow_share": len(slow_ms) / len(ms) if engine == "matcher" else None,
        "slow_p50_ms": _percentile(slow_ms, 50) if slow_ms else None,
        "semantic": semantic,
        "corpus": corpus_name,
        "engine": engine,
        "entries": len(corpus.entries),
        "rows": rows,
        "queries": len(queries),
        "warmup": len(warmup),
        "load_s": load_s,
        "analyzer_s": analyzer_s,
        "build_s": build_s,
        "p50_ms": _percentile(ms, 50),
        "p99_ms": _percentile(ms, 99),
        "max_ms": ms[-1],
        "mean_ms": sum(ms) / len(ms),
        "qps": len(queries) / (loop_ns / 1e9),
        "rss_before_mb": rss_before / 2**20,
        "rss_built_mb": rss_built / 2**20,
        "rss_after_mb": rss_after / 2**20,
        "build_rss_mb": (rss_built - rss_before) / 2**20,
        "shared_after_mb": None if shared_after is None else shared_after / 2**20,
        "peak_rss_mb": peak / 2**20,
        "scored": len(scored),
        "hit1": hit1,
        "hit10": hit10,
        "generation": generation,
        "code": code,
    }


# --------------------------------------------------------------------------------------------
# The report (parent process)
# --------------------------------------------------------------------------------------------


def _took_slow_path(query: str, result: Any) -> bool:
    """Whether ``match`` was unsure of the lexical result and matched again (semantic view, sentences)."""
    return bool(result.slow_path)


def _run_child(corpus_name: str, engine: str, data_dir: Path, entries: int, timeout: float) -> dict[str, Any] | None:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--one", corpus_name, "--engine", engine,
        "--data-dir", str(data_dir), "--entries", str(entries),
    ]
    print(f"  measuring {corpus_name} / {engine} ...", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"  {corpus_name} / {engine}: timed out after {timeout:.0f} s", file=sys.stderr)
        return None
    results = [line[len(RESULT_MARK) :] for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode != 0 or not results:
        print(f"  {corpus_name} / {engine}: child failed (exit {done.returncode})", file=sys.stderr)
        sys.stderr.write(done.stderr[-6000:])
        return None
    return json.loads(results[-1])


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    return format(value, spec)


def _yes(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


def _table(title: str, notes: list[str], m: dict[str, Any] | None, b: dict[str, Any] | None,
           targets: dict[str, tuple[str, bool | None]]) -> tuple[list[str], list[bool]]:
    def get(d: dict[str, Any] | None, key: str) -> Any:
        return None if d is None else d.get(key)

    def hits(d: dict[str, Any] | None) -> str:
        if d is None or not d["scored"]:
            return "-"
        return f"{d['hit1'] / d['scored']:.2f}/{d['hit10'] / d['scored']:.2f}"

    rows = [
        ("index build (s)", "build_s", ".3f"),
        ("latency p50 (ms)", "p50_ms", ".3f"),
        ("latency p99 (ms)", "p99_ms", ".3f"),
        ("latency max (ms)", "max_ms", ".3f"),
        ("  fast path p99 (ms)", "fast_p99_ms", ".3f"),
        ("  slow path p50 (ms)", "slow_p50_ms", ".3f"),
        ("  slow path p99 (ms)", "slow_p99_ms", ".3f"),
        ("  share on the slow path", "slow_share", ".3f"),
        ("queries/s (1 thread)", "qps", ",.0f"),
        ("RSS before build (MB)", "rss_before_mb", ".1f"),
        ("RSS increase of build (MB)", "build_rss_mb", ".1f"),
        ("RSS loaded, current (MB)", "rss_after_mb", ".1f"),
        ("  of which file-backed (MB)", "shared_after_mb", ".1f"),
        ("peak RSS, loaded (MB)", "peak_rss_mb", ".1f"),
    ]
    lines = [title, *(f"  {n}" for n in notes)]
    lines.append(f"  {'':30} {'matcher':>10} {'baseline':>10}   {'target (matcher)':<18} met")
    met: list[bool] = []
    for label, key, spec in rows:
        target, ok = targets.get(key, ("", None))
        lines.append(f"  {label:30} {_fmt(get(m, key), spec):>10} {_fmt(get(b, key), spec):>10}   {target:<18} {_yes(ok) if target else ''}".rstrip())
        if target and ok is not None:
            met.append(ok)
    lines.append(f"  {'top-1/top-10 hit (sanity)':30} {hits(m):>10} {hits(b):>10}   (not a target)")
    return lines, met


def report(quick: bool, seed: int, timeout: float) -> int:
    wall_started = time.perf_counter()
    code_before = _code_state()
    entries = QUICK_ENTRIES if quick else FULL_ENTRIES
    failed: list[str] = []
    results: dict[tuple[str, str], dict[str, Any] | None] = {}
    with tempfile.TemporaryDirectory(prefix="bench_matcher_") as tmp:
        data_dir = Path(tmp)
        print(f"  generating {entries:,} entries ...", file=sys.stderr, flush=True)
        generation = write_generated(data_dir, entries, seed)
        for corpus_name in ("jsug", "gen20k"):
            for engine in ("matcher", "baseline"):
                result = _run_child(corpus_name, engine, data_dir, entries, timeout)
                results[(corpus_name, engine)] = result
                if result is None:
                    failed.append(f"{corpus_name}/{engine}")

    lines: list[str] = ["", "FAQ matcher benchmark — matcher = bot.faq.matcher.match, baseline = CharTfidfBaseline (char 2–3-gram TF-IDF cosine)", ""]
    met: list[bool] = []

    m, b = results[("jsug", "matcher")], results[("jsug", "baseline")]
    any_run = m or b
    notes = []
    if any_run:
        notes.append(
            f"{any_run['entries']} entries"
            + (f" ({m['rows']} phrasing rows)" if m else "")
            + f"; {any_run['queries']} timed queries (tests/data/dev_questions.jsonl), {any_run['warmup']} untimed warm-up"
        )
    if m:
        notes.append(f"matcher build = Sudachi dictionary {m['analyzer_s']:.3f} s + build_index {m['build_s'] - m['analyzer_s']:.3f} s; corpus load {m['load_s']:.3f} s")
        notes.append("semantic view: " + ("on (slow path only)" if m["semantic"] else "off (turned off, or the model did not load)")
                     + "; the p99 target is the fast path's")
    targets = {
        "fast_p99_ms": (f"<= {TARGET_JSUG_P99_MS:g} ms", None if not m or m["fast_p99_ms"] is None else m["fast_p99_ms"] <= TARGET_JSUG_P99_MS),
        "peak_rss_mb": (f"<= {TARGET_RSS_MB:g} MB", None if not m else m["peak_rss_mb"] <= TARGET_RSS_MB),
    }
    block, ok = _table("(a) JSUG corpus (faq_data/)", notes, m, b, targets)
    lines += block + [""]
    met += ok

    m, b = results[("gen20k", "matcher")], results[("gen20k", "baseline")]
    any_run = m or b
    scale = "" if entries == FULL_ENTRIES else f" (targets are for {FULL_ENTRIES:,})"
    notes = [
        f"generated {generation['entries']:,} entries + {WARMUP + GEN_QUERIES} queries (seed {seed}) in {generation['seconds']:.2f} s, "
        f"JSON Lines {generation['bytes'] / 2**20:.1f} MB"
    ]
    if any_run:
        notes.append(
            f"{any_run['entries']:,} entries" + (f" ({m['rows']:,} phrasing rows)" if m else "")
            + f"; {any_run['queries']} timed paraphrase queries, {any_run['warmup']} untimed warm-up"
        )
    if m:
        notes.append(f"matcher build = Sudachi dictionary {m['analyzer_s']:.3f} s + build_index {m['build_s'] - m['analyzer_s']:.3f} s; corpus load {m['load_s']:.3f} s")
    targets = {
        "build_s": (f"<= {TARGET_GEN_BUILD_S:g} s", None if not m else m["build_s"] <= TARGET_GEN_BUILD_S),
        "p99_ms": (f"<= {TARGET_GEN_P99_MS:g} ms", None if not m else m["p99_ms"] <= TARGET_GEN_P99_MS),
        "peak_rss_mb": (f"<= {TARGET_RSS_MB:g} MB", None if not m else m["peak_rss_mb"] <= TARGET_RSS_MB),
    }
    block, ok = _table(f"(b) generated corpus, {entries:,} entries{scale}", notes, m, b, targets)
    lines += block + [""]
    met += ok

    lines.append(
        "Each (corpus, engine) pair ran in its own fresh process; peak RSS = ru_maxrss of that process after build and queries."
    )
    lines.append(f"targets met: {sum(met)}/{len(met)}" + (f"; FAILED measurements: {', '.join(failed)}" if failed else ""))
    code_after = _code_state()
    lines.append(f"benchmark wall time: {time.perf_counter() - wall_started:.1f} s; code measured: {code_before}")
    seen = {f"{c}/{e}": r["code"] for (c, e), r in results.items() if r}
    digests = {_digest_of(v) for v in (code_before, code_after, *seen.values())}
    if len(digests) > 1:  # a commit alone (same files) is no change
        lines.append("WARNING: the code changed during the run; the figures may mix versions:")
        lines += [f"  {name}: {version}" for name, version in seen.items()]
        lines.append(f"  after the run: {code_after}")
    lines.append(_machine_line())
    print("\n".join(lines), flush=True)
    return 1 if failed else 0


def _code_state() -> str:
    """The commit, and a digest of bot/ as it is on disk (the working tree may hold uncommitted work)."""
    import hashlib

    digest = hashlib.sha1()
    for path in sorted((REPO_ROOT / "bot").rglob("*")):
        if path.is_file() and path.suffix in (".py", ".json", ".yaml") and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0" + path.read_bytes())
    for extra in (REPO_ROOT / "faq_data").glob("*.yaml"):
        digest.update(extra.name.encode() + b"\0" + extra.read_bytes())
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "bot", "faq_data"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=10,
        )
        commit = head.stdout.strip() or "?"
        if dirty.stdout.strip():
            commit += " + uncommitted changes"
    except (OSError, subprocess.SubprocessError):
        commit = "no git"
    return f"git {commit}, bot/ + faq_data/ digest {digest.hexdigest()[:10]}"


def _digest_of(state: str) -> str:
    return state.rsplit(" ", 1)[-1]


def _machine_line() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"machine: {os.cpu_count()} CPUs ({usable} usable{', ' + model if model else ''}); "
        f"{platform.python_implementation()} {platform.python_version()}; {platform.system()} {platform.release()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"generate {QUICK_ENTRIES:,} entries instead of {FULL_ENTRIES:,}")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the generated corpus and its queries")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed to each child process")
    parser.add_argument("--one", choices=("jsug", "gen20k"), help=argparse.SUPPRESS)
    parser.add_argument("--engine", choices=("matcher", "baseline"), default="matcher", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--entries", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    entries = args.entries or (QUICK_ENTRIES if args.quick else FULL_ENTRIES)
    if args.one:
        result = measure(args.one, args.engine, args.data_dir, entries)
        print(RESULT_MARK + json.dumps(result, ensure_ascii=False), flush=True)
        return 0
    return report(args.quick, args.seed, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
