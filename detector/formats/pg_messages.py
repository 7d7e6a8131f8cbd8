"""PostgreSQL's messages in the server's language (``lc_messages``), read as English.

initdb sets ``lc_messages`` from the machine's locale. stderr and csvlog then print a
record's severity translated (``日志``, ``FEHLER``; jsonlog keeps English), stderr its
followers too (``语句:`` for ``STATEMENT:``), and every output the text of the
connection lines stderr names sessions by (``Verbindung autorisiert: Benutzer=...``).
pgAudit's own ``AUDIT:`` records are never translated.

The tables are PostgreSQL 15's translations, printed by ``scripts/pg_translations.py``
from its message catalogues and checked against those installed by
``tests/formats/test_pg_messages.py``.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

import polars as pl

# Each translated severity, and follower (its text before ":  "), and the name it stands for.
SEVERITY_NAMES: Final = {
    "LOGG": "LOG", "ЗАПИСУВАННЯ": "LOG", "СООБЩЕНИЕ": "LOG", "ჟურნალი": "LOG", "日志": "LOG",
    "日誌": "LOG", "로그": "LOG",
    "ERREUR": "ERROR", "ERRORE": "ERROR", "FEHLER": "ERROR", "FEL": "ERROR", "ОШИБКА": "ERROR",
    "ПОМИЛКА": "ERROR", "შეცდომა": "ERROR", "錯誤": "ERROR", "错误": "ERROR", "오류": "ERROR",
    "FATALE": "FATAL", "FATALT": "FATAL", "ВАЖНО": "FATAL", "ФАТАЛЬНО": "FATAL",
    "ფატალური": "FATAL", "致命錯誤": "FATAL", "致命错误": "FATAL", "치명적오류": "FATAL",
    "PANICO": "PANIC", "PANIK": "PANIC", "ПАНІКА": "PANIC", "ПАНИКА": "PANIC",
    "პანიკა": "PANIC", "嚴重錯誤": "PANIC", "灾难性错误": "PANIC", "손상": "PANIC",
    "ATTENTION": "WARNING", "ATTENZIONE": "WARNING", "VARNING": "WARNING", "WARNUNG": "WARNING",
    "ПОПЕРЕДЖЕННЯ": "WARNING", "ПРЕДУПРЕЖДЕНИЕ": "WARNING", "გაფრთხილება": "WARNING",
    "警告": "WARNING", "경고": "WARNING",
    "HINWEIS": "NOTICE", "NOTIFICA": "NOTICE", "NOTIS": "NOTICE", "ЗАМЕЧАНИЕ": "NOTICE",
    "ПОВІДОМЛЕННЯ": "NOTICE", "注意": "NOTICE", "알림": "NOTICE",
    "ІНФОРМАЦІЯ": "INFO", "ИНФОРМАЦИЯ": "INFO", "ინფორმაცია": "INFO", "信息": "INFO",
    "資訊": "INFO", "정보": "INFO",
    "НАЛАГОДЖЕННЯ": "DEBUG", "ОТЛАДКА": "DEBUG", "გამართვა": "DEBUG", "调试": "DEBUG",
    "除錯": "DEBUG", "디버그": "DEBUG",
    "DETALJ": "DETAIL", "DETALLE": "DETAIL", "DETTAGLI": "DETAIL", "DÉTAIL": "DETAIL",
    "ВІДОМОСТІ": "DETAIL", "ПОДРОБНОСТИ": "DETAIL", "დეტალები": "DETAIL", "詳情": "DETAIL",
    "詳細": "DETAIL", "详情": "DETAIL", "상세정보": "DETAIL",
    "ASTUCE ": "HINT", "SUGGERIMENTO": "HINT", "TIPP": "HINT", "TIPS": "HINT",
    "ПОДСКАЗКА": "HINT", "УКАЗІВКА": "HINT", "მინიშნება": "HINT", "ヒント": "HINT", "提示": "HINT",
    "힌트": "HINT",
    "ANFRAGE": "QUERY", "CONSULTA": "QUERY", "FRÅGA": "QUERY", "REQUÊTE ": "QUERY",
    "ЗАПИТ": "QUERY", "ЗАПРОС": "QUERY", "მოთხოვნა": "QUERY", "問い合わせ": "QUERY", "查詢": "QUERY",
    "查询": "QUERY",
    "CONTESTO": "CONTEXT", "CONTEXTE ": "CONTEXT", "CONTEXTO": "CONTEXT", "KONTEXT": "CONTEXT",
    "ZUSAMMENHANG": "CONTEXT", "КОНТЕКСТ": "CONTEXT", "კონტექსტი": "CONTEXT", "上下文": "CONTEXT",
    "文脈": "CONTEXT", "내용": "CONTEXT",
    "ANWEISUNG": "STATEMENT", "INSTRUCTION ": "STATEMENT", "ISTRUZIONE": "STATEMENT",
    "SATS": "STATEMENT", "SENTENCIA": "STATEMENT", "ІНСТРУКЦІЯ": "STATEMENT",
    "ОПЕРАТОР": "STATEMENT", "ოპერატორი": "STATEMENT", "文": "STATEMENT", "语句": "STATEMENT",
    "陳述式": "STATEMENT", "명령 구문": "STATEMENT",
}  # fmt: skip
# PostgreSQL's own names of the severities (DEBUG1-5 print as DEBUG) and stderr's followers.
SEVERITIES: Final = (
    *("DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "LOG", "FATAL", "PANIC"),
    *("DETAIL", "HINT", "QUERY", "CONTEXT", "LOCATION", "STATEMENT"),
)


class Pieces(NamedTuple):
    """A translation's pieces of the connection lines: the text before each ``%s``."""

    authorized: str  # connection authorized: user=
    replication: str  # replication connection authorized: user=
    database: str  #  database=
    application: str  #  application_name=
    host: str  # connection received: host=
    disconnection: str  # disconnection: session time: (up to the time)
    command: str  # received replication command:
    port: str  #  port=


ENGLISH: Final = Pieces(
    authorized="connection authorized: user=",
    replication="replication connection authorized: user=",
    database=" database=",
    application=" application_name=",
    host="connection received: host=",
    disconnection="disconnection: session time: ",
    command="received replication command: ",
    port=" port=",
)
CONNECTION_PIECES: Final = (
    Pieces(  # de
        authorized="Verbindung autorisiert: Benutzer=",
        replication="Replikationsverbindung autorisiert: Benutzer=",
        database=" Datenbank=",
        application=" application_name=",
        host="Verbindung empfangen: Host=",
        disconnection="Verbindungsende: Sitzungszeit: ",
        command="Replikationsbefehl empfangen: ",
        port=" Port=",
    ),
    Pieces(  # es
        authorized="conexión autorizada: usuario=",
        replication="conexión de replicación autorizada: usuario=",
        database=" base_de_datos=",
        application=" nombre_de_aplicación=",
        host="conexión recibida: host=",
        disconnection="desconexión: duración de sesión: ",
        command="se recibió orden de replicación: ",
        port=" port=",
    ),
    Pieces(  # fr
        authorized="connexion autorisée : utilisateur=",
        replication="connexion de réplication autorisée : utilisateur=",
        database=" base de données ",
        application=" application_name=",
        host="connexion reçue : hôte=",
        disconnection="déconnexion : durée de la session : ",
        command="commande de réplication reçu : ",
        port=" port=",
    ),
    Pieces(  # it
        authorized="connessione autorizzata: utente=",
        replication="connessione di replica autorizzata: utente=",
        database=" database ",
        application=" application_name=",
        host="connessione ricevuta: host=",
        disconnection="disconnessione: tempo della sessione: ",
        command="ricevuto comando di replica: ",
        port=" porta=",
    ),
    Pieces(  # ja
        authorized="接続の認証完了: ユーザー=",
        replication="レプリケーション接続の認証完了: ユーザー=",
        database=" データベース=",
        application=" application_name=",
        host="接続を受け付けました: ホスト=",
        disconnection="接続を切断: セッション時間: ",
        command="レプリケーションコマンドを受信しました: ",
        port=" ポート番号=",
    ),
    Pieces(  # ka
        authorized="შეერთება ავტორიზებულია: მომხმარებელი=",
        replication="რეპლიკაციის შეერთება ავტორიზებულია: მომხმარებელი=",
        database=" ბაზა=",
        application=" აპლიკაციის_სახელი=",
        host="შემოსული დაკავშირება: ჰოსტი=",
        disconnection="disconnection: session time: ",
        command="მიღებულია რეპლიკაციის ბრძანება: ",
        port=" პორტი=",
    ),
    Pieces(  # ko
        authorized="연결 인증: user=",
        replication="복제 연결 인증: user=",
        database=" database=",
        application=" application_name=",
        host="접속 수락: host=",
        disconnection="연결종료: 세션 시간: ",
        command="수신된 복제 명령: ",
        port=" port=",
    ),
    Pieces(  # ru
        authorized="подключение авторизовано: пользователь=",
        replication="подключение для репликации авторизовано: пользователь=",
        database=" база=",
        application=" приложение=",
        host="принято подключение: узел=",
        disconnection="отключение: время сеанса: ",
        command="получена команда репликации: ",
        port=" порт=",
    ),
    Pieces(  # sv
        authorized="anslutning auktoriserad: användare=",
        replication="replikeringsanslutning auktoriserad: användare=",
        database="databas=",
        application=" applikationsnamn=",
        host="ansluting mottagen: värd=",
        disconnection="nedkoppling: sessionstid: ",
        command="tog emot replikeringskommando: ",
        port=" port=",
    ),
    Pieces(  # uk
        authorized="підключення авторизовано: користувач=",
        replication="підключення для реплікації авторизовано: користувач=",
        database=" database=",
        application=" application_name=",
        host="з'єднання отримано: хост=",
        disconnection="відключення: час сеансу: ",
        command="отримано команду реплікації: ",
        port=" порт=",
    ),
    Pieces(  # zh_CN
        authorized="连接已授权: user=",
        replication="复制连接已授权: user=",
        database=" database=",
        application=" application_name=",
        host="已接收到连接: host=",
        disconnection="断开连接: 会话时长: ",
        command="收到的复制命令: ",
        port=" port=",
    ),
    Pieces(  # zh_TW
        authorized="連線已授權: user=",
        replication="複寫連線已授權: user=",
        database=" database=",
        application=" application_name=",
        host="連線已接收: host=",
        disconnection="中斷連線: 工作階段時間: ",
        command="收到的複寫命令: ",
        port=" port=",
    ),
)  # fmt: skip
# A line's first words: the connection lines' also carry translated field names.
_OPENING: Final = ("authorized", "replication", "host")
_HEADS: Final = ("authorized", "replication", "host", "disconnection", "command")
_TRANSLATED: Final = "^(?:" + "|".join(
    re.escape(head)
    for pieces in CONNECTION_PIECES
    for head in (getattr(pieces, name) for name in _HEADS)
    if head not in ENGLISH
) + ")"  # fmt: skip


def in_english(severity: pl.Series) -> pl.Series:
    """Severities as PostgreSQL names them, whatever its lc_messages printed."""
    if severity.is_in(SEVERITIES).all():  # (nulls too: not every record has one)
        return severity
    return severity.replace(SEVERITY_NAMES)


def connections_in_english(message: pl.Series) -> pl.Series:
    """``message`` with the translated connection and replication-command lines written
    as in English; one pass over the messages when there is none."""
    translated = message.str.contains(_TRANSLATED)
    if not translated.any():
        return message
    lines = message.filter(translated).to_frame("m")
    m = pl.col("m")
    for pieces in CONNECTION_PIECES:
        starts = {name: m.str.starts_with(getattr(pieces, name)) for name in _HEADS}
        english = m
        for name in _HEADS:  # the first words
            head, said = getattr(pieces, name), getattr(ENGLISH, name)
            if head != said:
                english = english.str.replace("^" + re.escape(head), said.replace("$", "$$"))
        opening = english
        for name in ("database", "application", "port"):  # and the connection's fields
            piece, said = getattr(pieces, name), getattr(ENGLISH, name)
            if piece != said:
                opening = opening.str.replace(piece, said, literal=True)
        lines = lines.with_columns(
            pl.when(pl.any_horizontal(starts[name] for name in _OPENING))
            .then(opening)
            .when(pl.any_horizontal(starts.values()))
            .then(english)
            .otherwise(m)
            .alias("m")
        )
    return message.clone().scatter(translated.arg_true(), lines["m"])
