/* placeholder: rtc.c */
