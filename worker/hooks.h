/* placeholder: the hook runner lands in the next commit */ typedef int bq_placeholder_hooks_t;
