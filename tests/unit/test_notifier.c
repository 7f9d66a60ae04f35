/*  tests/unit/test_notifier.c — the RFC 5322 messages the notifier sends:
 *  headers, CRLF, 7bit or base64 bodies, RFC 2047 subjects, and addresses
 *  refused before they reach SMTP. */
#include "notifier.h"
#include "unit.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define NOW_MS 1795608000123LL    /* 2026-11-25T... UTC */

/* The header `name` of `message` (up to its CRLF), into `out`. */
static const char *
s_header (const char *message, const char *name, char *out, size_t size)
{
    char key[64];
    snprintf (key, sizeof key, "\r\n%s: ", name);
    const char *start = strncmp (message, key + 2, strlen (key + 2)) == 0
                        ? message + strlen (key + 2) : strstr (message, key);
    if (!start)
        return NULL;
    if (start != message + strlen (key + 2))
        start += strlen (key);
    size_t len = strcspn (start, "\r");
    snprintf (out, size, "%.*s", (int) len, start);
    return out;
}

/* Usage: an ASCII email is 7bit with CRLF line ends and every header. */
static void
test_ascii_email (void)
{
    char *m = notifier_format ("Parley <parley@example.org>", "bob@example.com",
                               "2 unread messages in general", "Hello bob,\n\nline two\n",
                               NOW_MS);
    CU_ASSERT_PTR_NOT_NULL_FATAL (m);
    char value[200];
    CU_ASSERT_STRING_EQUAL (s_header (m, "From", value, sizeof value),
                            "Parley <parley@example.org>");
    CU_ASSERT_STRING_EQUAL (s_header (m, "To", value, sizeof value), "bob@example.com");
    CU_ASSERT_STRING_EQUAL (s_header (m, "Subject", value, sizeof value),
                            "2 unread messages in general");
    CU_ASSERT_PTR_NOT_NULL (strstr (s_header (m, "Date", value, sizeof value), "2026 "));
    CU_ASSERT_PTR_NOT_NULL (strstr (s_header (m, "Date", value, sizeof value), "+0000"));
    CU_ASSERT_PTR_NOT_NULL (strstr (s_header (m, "Message-ID", value, sizeof value),
                                    "@example.org>"));
    CU_ASSERT_STRING_EQUAL (s_header (m, "Content-Type", value, sizeof value),
                            "text/plain; charset=utf-8");
    CU_ASSERT_STRING_EQUAL (s_header (m, "Content-Transfer-Encoding", value, sizeof value),
                            "7bit");
    CU_ASSERT_STRING_EQUAL (s_header (m, "MIME-Version", value, sizeof value), "1.0");
    CU_ASSERT_PTR_NOT_NULL (strstr (m, "\r\n\r\nHello bob,\r\n\r\nline two\r\n"));
    /* every LF is part of a CRLF */
    for (const char *p = m; (p = strchr (p, '\n')); p++)
        CU_ASSERT_EQUAL (p[-1], '\r');
    free (m);
}

/* UTF-8 text: base64 body, RFC 2047 subject in whole characters. */
static void
test_utf8_email (void)
{
    const char *text = "héllo ☃\nsecond line\n";
    const char *subject = "3 unread messages in Café ☕ — the long name of a room that goes on";
    char *m = notifier_format ("parley@example.org", "Bob <bob@example.com>", subject, text,
                               NOW_MS);
    CU_ASSERT_PTR_NOT_NULL_FATAL (m);
    char value[200];
    CU_ASSERT_STRING_EQUAL (s_header (m, "Content-Transfer-Encoding", value, sizeof value),
                            "base64");
    CU_ASSERT_PTR_NOT_NULL (strstr (m, "Subject: =?UTF-8?B?"));
    CU_ASSERT_PTR_NOT_NULL (strstr (m, "?=\r\n =?UTF-8?B?"));      /* folded words */
    /* the body decodes to the text with CRLF line ends */
    const char *body = strstr (m, "\r\n\r\n") + 4;
    char joined[400] = "";
    for (const char *p = body; *p; ) {
        size_t len = strcspn (p, "\r");
        strncat (joined, p, len);
        p += len;
        while (*p == '\r' || *p == '\n')
            p++;
    }
    unsigned char decoded[400];
    size_t size = 0;
    CU_ASSERT_EQUAL (sodium_base642bin (decoded, sizeof decoded, joined, strlen (joined), NULL,
                                        &size, NULL, sodium_base64_VARIANT_ORIGINAL), 0);
    CU_ASSERT_EQUAL (size, strlen ("héllo ☃\r\nsecond line\r\n"));
    CU_ASSERT_EQUAL (memcmp (decoded, "héllo ☃\r\nsecond line\r\n", size), 0);
    /* each encoded word decodes to whole UTF-8 characters */
    char *word = strstr (m, "=?UTF-8?B?");
    size_t total = 0;
    while (word) {
        word += 10;
        size_t len = (size_t) (strstr (word, "?=") - word);
        unsigned char part[100];
        size_t n = 0;
        CU_ASSERT_EQUAL (sodium_base642bin (part, sizeof part, word, len, NULL, &n, NULL,
                                            sodium_base64_VARIANT_ORIGINAL), 0);
        CU_ASSERT ((part[0] & 0xC0) != 0x80);
        CU_ASSERT_EQUAL (memcmp (subject + total, part, n), 0);
        total += n;
        word = strstr (word, "=?UTF-8?B?");
    }
    CU_ASSERT_EQUAL (total, strlen (subject));
    free (m);
}

/* Header injection and nonsense addresses never make a message. */
static void
test_refuses_bad_input (void)
{
    CU_ASSERT_PTR_NULL (notifier_format ("p@example.org", "bob@example.com", "a\r\nBcc: x@y.z",
                                         "t", NOW_MS));
    CU_ASSERT_PTR_NULL (notifier_format ("p@example.org", "bob@example.com\r\nBcc: x@y.z",
                                         "s", "t", NOW_MS));
    CU_ASSERT_PTR_NULL (notifier_format ("p@example.org", "not an address", "s", "t", NOW_MS));
    CU_ASSERT_PTR_NULL (notifier_format ("nobody", "bob@example.com", "s", "t", NOW_MS));
    CU_ASSERT_PTR_NULL (notifier_format ("p@example.org", NULL, "s", "t", NOW_MS));
}

static void
test_address (void)
{
    char out[100];
    CU_ASSERT_EQUAL (notifier_address ("Parley <parley@example.org>", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL (out, "parley@example.org");
    CU_ASSERT_EQUAL (notifier_address ("bob@example.com", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL (out, "bob@example.com");
    CU_ASSERT_EQUAL (notifier_address ("@example.com", out, sizeof out), -1);
    CU_ASSERT_EQUAL (notifier_address ("bob@", out, sizeof out), -1);
    CU_ASSERT_EQUAL (notifier_address ("<>", out, sizeof out), -1);
    CU_ASSERT_EQUAL (notifier_address ("a b@example.com", out, sizeof out), -1);
    CU_ASSERT_EQUAL (notifier_address ("bob@example.com", out, 5), -1);
}

int
main (void)
{
    if (sodium_init () < 0)
        return 2;
    CU_TestInfo tests[] = {
        { "an ASCII email", test_ascii_email },
        { "a UTF-8 email", test_utf8_email },
        { "bad input is refused", test_refuses_bad_input },
        { "addresses", test_address },
        CU_TEST_INFO_NULL
    };
    return unit_run ("notifier", tests);
}
