/*  tests/unit/test_files.c — attachments' pure helpers: Range parsing,
 *  Content-Disposition, client file names (gateway/files.h), and the type
 *  rules and storage paths of the media actor (actors/media.h). */
#include "files.h"
#include "media.h"
#include "unit.h"

/* Usage: one range of a 1000-byte file, in its three spellings. */
static void
test_range_forms (void)
{
    uint64_t first = 99, last = 99;
    CU_ASSERT_EQUAL (files_parse_range ("bytes=10-19", 1000, &first, &last), 1);
    CU_ASSERT_EQUAL (first, 10);
    CU_ASSERT_EQUAL (last, 19);
    CU_ASSERT_EQUAL (files_parse_range ("bytes=990-", 1000, &first, &last), 1);
    CU_ASSERT_EQUAL (first, 990);
    CU_ASSERT_EQUAL (last, 999);
    CU_ASSERT_EQUAL (files_parse_range ("bytes=-100", 1000, &first, &last), 1);
    CU_ASSERT_EQUAL (first, 900);
    CU_ASSERT_EQUAL (last, 999);
    /* a suffix longer than the file is the whole file; an end past it is cut */
    CU_ASSERT_EQUAL (files_parse_range ("bytes=-5000", 1000, &first, &last), 1);
    CU_ASSERT_EQUAL (first, 0);
    CU_ASSERT_EQUAL (last, 999);
    CU_ASSERT_EQUAL (files_parse_range ("Bytes= 5-123456789", 1000, &first, &last), 1);
    CU_ASSERT_EQUAL (first, 5);
    CU_ASSERT_EQUAL (last, 999);
}

static void
test_range_refused_or_ignored (void)
{
    uint64_t first, last;
    /* unsatisfiable: 416 */
    CU_ASSERT_EQUAL (files_parse_range ("bytes=1000-", 1000, &first, &last), -1);
    CU_ASSERT_EQUAL (files_parse_range ("bytes=1000-2000", 1000, &first, &last), -1);
    CU_ASSERT_EQUAL (files_parse_range ("bytes=-0", 1000, &first, &last), -1);
    /* ignored: the whole file */
    const char *ignored[] = { "", "bytes=", "bytes=-", "bytes=5-2", "bytes=0-1,4-5",
                              "items=0-5", "bytes=a-5", "bytes=5", "bytes=1-2x",
                              "bytes=99999999999999999999999-", NULL };
    for (int i = 0; ignored[i]; i++)
        CU_ASSERT_EQUAL (files_parse_range (ignored[i], 1000, &first, &last), 0);
}

static void
test_disposition (void)
{
    char out[1200];
    files_disposition ("report.pdf", false, out, sizeof out);
    CU_ASSERT_STRING_EQUAL (out, "attachment; filename=\"report.pdf\"; "
                                 "filename*=UTF-8''report.pdf");
    files_disposition ("caf\xc3\xa9 \"1\".png", true, out, sizeof out);
    CU_ASSERT_STRING_EQUAL (out, "inline; filename=\"caf__ _1_.png\"; "
                                 "filename*=UTF-8''caf%C3%A9%20%221%22.png");
    files_disposition ("a\\b\r\n", false, out, sizeof out);
    CU_ASSERT_STRING_EQUAL (out, "attachment; filename=\"a_b__\"; "
                                 "filename*=UTF-8''a%5Cb%0D%0A");
}

static void
test_clean_name (void)
{
    char out[16];
    files_clean_name ("C:\\Users\\me\\photo.jpg", out, sizeof out);
    CU_ASSERT_STRING_EQUAL (out, "photo.jpg");
    files_clean_name ("../../etc/passwd", out, sizeof out);
    CU_ASSERT_STRING_EQUAL (out, "passwd");
    files_clean_name ("tab\there", out, sizeof out);
    CU_ASSERT_STRING_EQUAL (out, "tabhere");
    files_clean_name ("dir/", out, sizeof out);
    CU_ASSERT_STRING_EQUAL (out, "file");
    files_clean_name (NULL, out, sizeof out);
    CU_ASSERT_STRING_EQUAL (out, "file");
    files_clean_name ("bad\xff.txt", out, sizeof out);
    CU_ASSERT_STRING_EQUAL (out, "file");
    /* cut to 15 bytes, never inside a character (14 + 2 would be 16) */
    files_clean_name ("aaaaaaaaaaaaaa\xc3\xa9", out, sizeof out);
    CU_ASSERT_STRING_EQUAL (out, "aaaaaaaaaaaaaa");
    files_clean_name ("aaaaaaaaaaaaa\xc3\xa9zz", out, sizeof out);
    CU_ASSERT_STRING_EQUAL (out, "aaaaaaaaaaaaa\xc3\xa9");
}

static void
test_types (void)
{
    CU_ASSERT_TRUE (media_fits_type ("image/png", "image"));
    CU_ASSERT_FALSE (media_fits_type ("image/svg+xml", "image"));
    CU_ASSERT_FALSE (media_fits_type ("image/png", "video"));
    CU_ASSERT_TRUE (media_fits_type ("video/mp4", "video"));
    CU_ASSERT_TRUE (media_fits_type ("audio/x-wav", "audio"));
    CU_ASSERT_FALSE (media_fits_type ("application/x-pie-executable", "image"));
    CU_ASSERT_TRUE (media_fits_type ("application/x-pie-executable", "file"));
    CU_ASSERT_TRUE (media_fits_type ("image/svg+xml", "file"));
    CU_ASSERT_FALSE (media_fits_type ("text/plain", "text"));
    CU_ASSERT_FALSE (media_fits_type (NULL, "file"));
    CU_ASSERT_TRUE (media_is_image ("image/jpeg"));
    CU_ASSERT_FALSE (media_is_image ("image/svg+xml"));
    CU_ASSERT_FALSE (media_is_image ("text/html"));
}

static void
test_storage_paths (void)
{
    CU_ASSERT_TRUE (media_path_valid ("ab/0123456789abcdef0123456789abcdef"));
    CU_ASSERT_TRUE (media_path_valid ("ab/0123456789abcdef0123456789abcdef.thumb.jpg"));
    CU_ASSERT_FALSE (media_path_valid ("/etc/passwd"));
    CU_ASSERT_FALSE (media_path_valid ("ab/../../etc/passwd"));
    CU_ASSERT_FALSE (media_path_valid ("ab/X"));
    CU_ASSERT_FALSE (media_path_valid (""));
    CU_ASSERT_FALSE (media_path_valid (NULL));

    config_t config = { .var_dir = "var", .media_dir = "", .media_workers = 3 };
    char dir[256];
    media_dir (&config, dir, sizeof dir);
    CU_ASSERT_STRING_EQUAL (dir, "var/media");
    media_incoming_dir (&config, dir, sizeof dir);
    CU_ASSERT_STRING_EQUAL (dir, "var/media/incoming");
    config.media_dir = "/srv/media";
    media_dir (&config, dir, sizeof dir);
    CU_ASSERT_STRING_EQUAL (dir, "/srv/media");
    media_worker_name (&config, "some-id", dir, sizeof dir);
    CU_ASSERT_EQUAL (strncmp (dir, "media.", 6), 0);
    CU_ASSERT_TRUE (dir[6] >= '0' && dir[6] <= '2' && dir[7] == '\0');
}

int
main (void)
{
    CU_TestInfo tests[] = {
        { "range forms", test_range_forms },
        { "range refused or ignored", test_range_refused_or_ignored },
        { "content disposition", test_disposition },
        { "client file names", test_clean_name },
        { "types fit message types", test_types },
        { "storage paths and directories", test_storage_paths },
        CU_TEST_INFO_NULL
    };
    return unit_run ("files", tests);
}
