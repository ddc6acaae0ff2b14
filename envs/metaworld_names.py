"""Names of the Meta-World task classes, the metabench ids built on them, and their split hashes.

Plain constants and pure functions only: :mod:`metabench.registration` reads this module to register
the 52 Meta-World ids, so it must not import Meta-World (nor MuJoCo). The class lists are Meta-World
3.1.1's own (``metaworld.env_dict.ALL_V3_ENVIRONMENTS``, ``ML10_V3`` and ``ML45_V3``, in their order);
``tests/test_metaworld.py`` checks that they still are.
"""

from __future__ import annotations

import difflib

#: The Meta-World release the frozen goal sets were generated with (``constraints.txt`` pins it).
METAWORLD_VERSION = "3.1.1"

#: Seed given to Meta-World's own benchmark constructors to draw the frozen goals
#: (``metaworld.ML1(name, seed=GOAL_SEED)``: train goals from this seed, test goals from seed + 1;
#: ``metaworld.ML10(seed=GOAL_SEED)``, ``metaworld.ML45(seed=GOAL_SEED)``). See ``envs/metaworld_goals.py``.
GOAL_SEED = 42

#: Every Meta-World v3 task class, in Meta-World's order: a class's position is its ``task_id``
#: (the ``class_id`` task parameter of ML10 and ML45).
ML1_NAMES: tuple[str, ...] = (
    "assembly-v3",
    "basketball-v3",
    "bin-picking-v3",
    "box-close-v3",
    "button-press-topdown-v3",
    "button-press-topdown-wall-v3",
    "button-press-v3",
    "button-press-wall-v3",
    "coffee-button-v3",
    "coffee-pull-v3",
    "coffee-push-v3",
    "dial-turn-v3",
    "disassemble-v3",
    "door-close-v3",
    "door-lock-v3",
    "door-open-v3",
    "door-unlock-v3",
    "hand-insert-v3",
    "drawer-close-v3",
    "drawer-open-v3",
    "faucet-open-v3",
    "faucet-close-v3",
    "hammer-v3",
    "handle-press-side-v3",
    "handle-press-v3",
    "handle-pull-side-v3",
    "handle-pull-v3",
    "lever-pull-v3",
    "pick-place-wall-v3",
    "pick-out-of-hole-v3",
    "pick-place-v3",
    "plate-slide-v3",
    "plate-slide-side-v3",
    "plate-slide-back-v3",
    "plate-slide-back-side-v3",
    "peg-insert-side-v3",
    "peg-unplug-side-v3",
    "soccer-v3",
    "stick-push-v3",
    "stick-pull-v3",
    "push-v3",
    "push-wall-v3",
    "push-back-v3",
    "reach-v3",
    "reach-wall-v3",
    "shelf-place-v3",
    "sweep-into-v3",
    "sweep-v3",
    "window-open-v3",
    "window-close-v3",
)

ML10_TRAIN: tuple[str, ...] = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "sweep-v3",
    "basketball-v3",
)
ML10_TEST: tuple[str, ...] = (
    "drawer-open-v3",
    "door-close-v3",
    "shelf-place-v3",
    "sweep-into-v3",
    "lever-pull-v3",
)

ML45_TRAIN: tuple[str, ...] = (
    "assembly-v3",
    "basketball-v3",
    "button-press-topdown-v3",
    "button-press-topdown-wall-v3",
    "button-press-v3",
    "button-press-wall-v3",
    "coffee-button-v3",
    "coffee-pull-v3",
    "coffee-push-v3",
    "dial-turn-v3",
    "disassemble-v3",
    "door-close-v3",
    "door-open-v3",
    "drawer-close-v3",
    "drawer-open-v3",
    "faucet-open-v3",
    "faucet-close-v3",
    "hammer-v3",
    "handle-press-side-v3",
    "handle-press-v3",
    "handle-pull-side-v3",
    "handle-pull-v3",
    "lever-pull-v3",
    "pick-place-wall-v3",
    "pick-out-of-hole-v3",
    "push-back-v3",
    "pick-place-v3",
    "plate-slide-v3",
    "plate-slide-side-v3",
    "plate-slide-back-v3",
    "plate-slide-back-side-v3",
    "peg-insert-side-v3",
    "peg-unplug-side-v3",
    "soccer-v3",
    "stick-push-v3",
    "stick-pull-v3",
    "push-wall-v3",
    "push-v3",
    "reach-wall-v3",
    "reach-v3",
    "shelf-place-v3",
    "sweep-into-v3",
    "sweep-v3",
    "window-open-v3",
    "window-close-v3",
)
ML45_TEST: tuple[str, ...] = (
    "bin-picking-v3",
    "box-close-v3",
    "hand-insert-v3",
    "door-lock-v3",
    "door-unlock-v3",
)

#: Train and test classes of the multi-class benchmarks, by benchmark name.
BENCHMARK_CLASSES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ML10": (ML10_TRAIN, ML10_TEST),
    "ML45": (ML45_TRAIN, ML45_TEST),
}

#: Number of goals per class and split: Meta-World's ``_N_GOALS``.
GOALS_PER_CLASS = 50

#: Gymnasium's kwargs for every Meta-World id, registered so that ``env.spec.kwargs`` (and a result's
#: provenance) always names the reward version.
DEFAULT_REWARD_VERSION = "v2"


def ml1_name(name: str) -> str:
    """The Meta-World class name for ``name`` (``"pick-place"`` or ``"pick-place-v3"``).

    Raises ``ValueError`` naming the valid names when there is no such class.
    """
    full = name if name.endswith("-v3") else f"{name}-v3"
    if full not in ML1_NAMES:
        valid = [n.removesuffix("-v3") for n in ML1_NAMES]
        close = difflib.get_close_matches(name.removesuffix("-v3"), valid, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown Meta-World ML1 task {name!r}.{hint} Valid names: {', '.join(valid)}")
    return full


def ml1_id(name: str) -> str:
    """The metabench id of an ML1 task: ``ml1_id("pick-place-v3") == "metabench/ML1-pick-place-v0"``."""
    return f"metabench/ML1-{ml1_name(name).removesuffix('-v3')}-v0"


def ml1_class_name(name: str) -> str:
    """The env class of an ML1 id in ``metabench.envs.metaworld``: ``"ML1PickPlaceEnv"`` for pick-place."""
    parts = ml1_name(name).removesuffix("-v3").split("-")
    return "ML1" + "".join(p.capitalize() for p in parts) + "Env"


ML1_IDS: tuple[str, ...] = tuple(ml1_id(n) for n in ML1_NAMES)

#: The Meta-World ids that the generic env tests (tests/test_envs.py) run on: constructing Sawyer envs
#: is slow, and the 50 ML1 ids share one class, so a few stand for all (3-d and 6-d goal vectors).
QUICK_TEST_IDS: tuple[str, ...] = (
    "metabench/ML1-reach-v0",
    "metabench/ML1-pick-place-v0",
    "metabench/ML1-door-open-v0",
    "metabench/ML10-v0",
    "metabench/ML45-v0",
)

#: sha256 of each frozen split (see metabench.tasks.split_digest), written here once by
#: ``python -m metabench.envs.metaworld_goals --print-hashes``; a changed goal set fails the check.
SPLIT_HASHES: dict[str, dict[str, str]] = {
    "metabench/ML1-assembly-v0": {
        "train": "98a411b211eea67bdae84eb6737d910e577b4fee3d02f6c65ceb8ca58b163d97",
        "test": "77c97e566422431250e39515840503e0a740cb160da206fa42ddad4e31ea1fec",
    },
    "metabench/ML1-basketball-v0": {
        "train": "bd5304f96a2f6e863884869b53d9062e7299c06587d3155c1634a30ed196d30e",
        "test": "220cd8c77e2f33b52633993fe6c3a4d1dca39ff1040c6f1e7a75a447af35bbfe",
    },
    "metabench/ML1-bin-picking-v0": {
        "train": "06ff646ad6c0b6416f297350909f8b9d4aea31b9ddf37b2f4ed70f1112d8696d",
        "test": "63217da4df2133c5f6960f874c583a563a80c811862d8f8748abf31accf10ce9",
    },
    "metabench/ML1-box-close-v0": {
        "train": "c7093b7975826bafe4d088d043c7a38372ef1988a949920eb88782af0566e1e1",
        "test": "b297184a28a7bc43e9d6aca03e28b1618f57705ae27079414c788ec55c9ca489",
    },
    "metabench/ML1-button-press-topdown-v0": {
        "train": "3e6b85fd0b21f8f43be91737faa07f70f71650bfedeff2531c208479e5652676",
        "test": "55f0ef5f6f0c81ea34f447e33f167095918280f97c47472d114bfb4e0ba66a6d",
    },
    "metabench/ML1-button-press-topdown-wall-v0": {
        "train": "2aae2fece8c85667c8058f6d88f9fec57f1f364b11b6561ca630e9b8f41df626",
        "test": "dcc3c0684a3922ccc1175a37a5d953ba0dd8990e3fdd0e66c20facbe8f36f9e7",
    },
    "metabench/ML1-button-press-v0": {
        "train": "afc69c1371ccf74092f0bd49d9c029bf8632558b94dba2a0a3670c626577e360",
        "test": "03d50ff8d2366777c130b11a445dd450ebebde507a282b1a5d1e68e730848a55",
    },
    "metabench/ML1-button-press-wall-v0": {
        "train": "ab80e9d61ac1bea7bcc8a7dc42d5442798dd7e437db0707790fd77e45985a3d8",
        "test": "0ba4724616c6b3b2eb4a5a098eefb1a8fb468b40107ab49bc3164df8dfc96cae",
    },
    "metabench/ML1-coffee-button-v0": {
        "train": "c543d366cbdecaeae0c37499b019f8f4f17d81eca375d1929fe7d117d1c70d94",
        "test": "5ea8647241f8c1d0a8d237cb0887bd0ec12d2430d238d08c36947ede3d8c39e0",
    },
    "metabench/ML1-coffee-pull-v0": {
        "train": "2a3452940db6737f13d55629d6475bd54701aed8d30ff6258ac7e52f8be24727",
        "test": "4a0c2588ee243628e4868871c68c305e33603f5e0e5f3eb1ffeaf2e86077b93f",
    },
    "metabench/ML1-coffee-push-v0": {
        "train": "ed30d2376b0e87ffdb6a2e331054984d6e76a87fbfc506ddda6438a78f3c88c3",
        "test": "68fbbc2ae40badcaaef64a99511d6360df5f03e3c8b205497e51a9ad2747332a",
    },
    "metabench/ML1-dial-turn-v0": {
        "train": "3c11e880d0332bed5d5a1627865d1f503a72c943b2488514eb0f519ac2fc2998",
        "test": "36900038e3915d38f36082257abc061f012794fadf982e1fe671a0e0d59014ac",
    },
    "metabench/ML1-disassemble-v0": {
        "train": "b0ba7c20995576e8e2fa0352b7b04b2e73e718a574603b229e0b9b982443400d",
        "test": "dd9ff333919045b6aa84adecdeb02606a1b4308fda7bc43540ac9ae5e00cfbbf",
    },
    "metabench/ML1-door-close-v0": {
        "train": "5f64e72d94f0d0f6645908ec3cc0efdac52d5d0cf2560661acba372459803ade",
        "test": "0b4d1f161e2687a2c0b75d81a9b1c09e10ca510675cd8bc3c428724c1e62880d",
    },
    "metabench/ML1-door-lock-v0": {
        "train": "09858f63abe08e56226a4b11ce6e8eef3b06c2bd50cd6c9aa6e0a13e311117aa",
        "test": "f9a58e6be6703865161482e9f45ea85c1a028f0a6a2494fd13e59edbefbb80ca",
    },
    "metabench/ML1-door-open-v0": {
        "train": "e4bea2fbd373efbb09a4d2505e806004b35108b9624520fcacc56b329b1b5a11",
        "test": "5c6af32d93073ee4f85f3badf9b00ae3c55815f4290a8acb634fe7b5a1c64b2a",
    },
    "metabench/ML1-door-unlock-v0": {
        "train": "9590f87b985f0aaf36a7acdac9bdb22e218d250242564f4670de15e4c95ff10b",
        "test": "c6fa704d27a487845410d6352b084c050c5ce2b70367abba26de649cccddca85",
    },
    "metabench/ML1-hand-insert-v0": {
        "train": "d371c866d6b448aefea1fd9495433af902f0e8cca76d87c80e8c3d54793ead7b",
        "test": "9ce69c775d15b3eafa0f77106d45e93f693ef8fd21b44f0990fb23d8db8d898e",
    },
    "metabench/ML1-drawer-close-v0": {
        "train": "f3f8978a5e9876c0ab755f5fe2dbaaf00b66e226aa50b01199f408d14f179dac",
        "test": "3dce890ce8ef4eb5244887584f1ffb6674a11db461593752ca09c506578a821d",
    },
    "metabench/ML1-drawer-open-v0": {
        "train": "643a0fce128353abba81353d943f55ac73a4cf207bfd8214a5bdcf6ba07ad39b",
        "test": "43c86f8673fa7c95fbdb1ed5dac56362e968809e6af9036187366981caacd8c4",
    },
    "metabench/ML1-faucet-open-v0": {
        "train": "426f75f378db34460853aefcd9fac4b0fa9b38aa71d2d58caac3fefad7515641",
        "test": "c79b323000b241513f572c77ab292721aa244bc0a89f9eb7de2471425b8f9aad",
    },
    "metabench/ML1-faucet-close-v0": {
        "train": "3d49b7a4f9a7a6f105c7d59bcd1d27089e4aa8440f5e830e5d83df598c4afded",
        "test": "8f69f4c8569d5322ffaca86267c7d10d827a87e48d29e032c3f1c67d17649945",
    },
    "metabench/ML1-hammer-v0": {
        "train": "fabfb2170fc5bfe347855cd4fa8a0ca27d898c6ec8e0fd290a26dc9c04689e60",
        "test": "676d0384b3bade57311defc1159ba30e50a8bdb5f6d37f40ac8ab39ae436de37",
    },
    "metabench/ML1-handle-press-side-v0": {
        "train": "561a87c3e9a3f16eb6a3b3f9cd82ce933717ef27c393f5863360b60d94636508",
        "test": "180873e80371d643583e2d4a254fcef382975712a421bb29808b3ccba9358b4e",
    },
    "metabench/ML1-handle-press-v0": {
        "train": "828592cd2391656e916c9dff2e9065b71b029e28864edcec7167e8f3ba4b0cf2",
        "test": "80ef6d61327029b6d87ad5c2ac7b5e003ace72214c0220acdfbde7a4a8132c99",
    },
    "metabench/ML1-handle-pull-side-v0": {
        "train": "b598d3ef285ac5704a230f043332efe2b3a80e5520c28958761c548de4b2a7b2",
        "test": "94d99c2003023c8f2792b08d25ad4d10927b366cb945b922ca373f6186bb5423",
    },
    "metabench/ML1-handle-pull-v0": {
        "train": "6097196302932bae54d9eade59b8c590cebf16e5f71808fc29ea44bf68b4ae9b",
        "test": "1bf4bdba610e6a9646e8a6c84e9f7c96677ece9d3e83a5cd5ee96bb4fb22603a",
    },
    "metabench/ML1-lever-pull-v0": {
        "train": "446a9a642cca930b877ca45ce87ad19e1df4cfaecd0a6b135bc3dbe15bcbc40b",
        "test": "2c399719fe5514d4187ec728afff18b5d8d91f576993d9a14c9506e24cf42ed6",
    },
    "metabench/ML1-pick-place-wall-v0": {
        "train": "99e9b29d0f1fdb8a26982b3988c21084907e12ab39d21dbafa80c7882521d8a0",
        "test": "4f24edfa407afb0668db4cfbda4d5689542e8801192da7c228b608ff184681df",
    },
    "metabench/ML1-pick-out-of-hole-v0": {
        "train": "484b345b2c2429474e63db669e5223d9bf4ee1f1b590692171dbb035849a184f",
        "test": "d34c981248afd2f3f986b05c6cff7b979f1a3fb58fcf6acc5e5df8b7accd0476",
    },
    "metabench/ML1-pick-place-v0": {
        "train": "307867b37ae46acf586dd23fcb258fa3e82ad1338f9d5f5f425f74d2f38ccba1",
        "test": "cd0b3bad9c7b119848a786cf754ed57e3db071242fd53cf1351a93033d74c085",
    },
    "metabench/ML1-plate-slide-v0": {
        "train": "e57ad8c784610a64d874acb115b93aa669112bbd1bd2134d02a16601a9bd44c4",
        "test": "bcdb02204c2541a2837f8029e44e5b2abfbf8481f2d6281c24c68c899cd186cb",
    },
    "metabench/ML1-plate-slide-side-v0": {
        "train": "52823e9b12869c9e1d7c5dc0d6dd14a63b4430f21966d75735ea8df904dfe1f1",
        "test": "3828f7710ee0341686382565e0b833de9dce3633b9f042260f3e6fe58c9d76a9",
    },
    "metabench/ML1-plate-slide-back-v0": {
        "train": "40a5e18292c85ca4d8bc8b2640dbd09d2a058b28ebee07e4a07666503988d3e6",
        "test": "f81135f0351dac1398671f22c70033db2118a45768097bceefa2cc9dbd069924",
    },
    "metabench/ML1-plate-slide-back-side-v0": {
        "train": "20329cc0ee7073d33f33fd9ceb1407b9ab99850be68f4eb25ad22f68aac462ec",
        "test": "616eaf6d2fe59177bcfea0af961388be3b4a4a0aa75a0019874104418821102d",
    },
    "metabench/ML1-peg-insert-side-v0": {
        "train": "f9ec9e1663052ca9ee32401a94b3382fdda1cb6ae82168ce77b831167db3efa3",
        "test": "50a1c7d2c61f364e963f587a7c9c3c65fb7e9ae962a5e359d8efe801c94a682a",
    },
    "metabench/ML1-peg-unplug-side-v0": {
        "train": "41aa452d9eddd6ebce76a91fea59dd102391f1e9a0a1bcc4b6ca6a222226b181",
        "test": "37ff6de432c9c25bdd8870ac98b83a1f1b12070f4ac897a3302d28cc7d83b3b6",
    },
    "metabench/ML1-soccer-v0": {
        "train": "a39903464aecc2039aaba210f433babd7ed4092c27a64b83090b39b5e7146050",
        "test": "b3a81eca65eaea5c8ad3790ec426c033c53576d9d824fcd528de735635d64f0a",
    },
    "metabench/ML1-stick-push-v0": {
        "train": "de00bb4b1192ba8bb11966ac20c1618d56ba816e74328f489d062e9c260f2c96",
        "test": "ad446dc8b1aecb770004d8a9cfc557e8433665b001bc4d6ac6aee1d5392122c6",
    },
    "metabench/ML1-stick-pull-v0": {
        "train": "52a9b67560eb52a80c57ec0c565e8ae91979a0d428a8e80c76805a3c3480eef1",
        "test": "2fdd30c0f716dac0a9ca7eeafeef8da8fbc12ac6eb633a5678413e37badd5937",
    },
    "metabench/ML1-push-v0": {
        "train": "dc3835afb72fc4772927633e7c8439e4c3ceef525ec8629504d68ded0bf59f2a",
        "test": "49b03aef37d4d4cbc3140f95e9bb602cffbfc91d7d051f3a74e29e378c350c16",
    },
    "metabench/ML1-push-wall-v0": {
        "train": "3c77a8dae8885349756f21585a12a8c1d4dea6ea96be60aa925c9b6e6e287953",
        "test": "37120870a5bc64fba33d377aab6bb4a31f44a450294f6546d75ad85dcd73de7b",
    },
    "metabench/ML1-push-back-v0": {
        "train": "c8f823abba9cb876e922ea793a8ede10a875dd63e52c4e209b4e63ec363dcd7c",
        "test": "417673b9451c6f6fc71c7bc38ff51bc1b473e38a14f5c296bd22f1e84dfb545c",
    },
    "metabench/ML1-reach-v0": {
        "train": "94fef7e1a0a6c4897f5a7d91507f431b1a76d97d8edba59d3e29a95019f956eb",
        "test": "5fb08c1113ba86c972384020b41c12d18c32c3274676a0829b8a8562763f9f69",
    },
    "metabench/ML1-reach-wall-v0": {
        "train": "6b7770dece494dc84abc3e1eaa6b187ba7c70be2b99b882d56c3681e78916a57",
        "test": "53472d8cb111b09c91340c455131681230716f51688e8845e9c5659073d1750f",
    },
    "metabench/ML1-shelf-place-v0": {
        "train": "668e4bfd1824d39b756e1f97c9190b63bc2113871b05d755b15c126a50df497d",
        "test": "71875c27f864fd3267215fb6f4f73ad135c0475255e7e0c51fee06ad724b46c9",
    },
    "metabench/ML1-sweep-into-v0": {
        "train": "ed3fa3cb9a9c36f53d95a000a3138e2d159f7822a2200fa98c7f934a0fb4eedf",
        "test": "4fd1eb674e6c734888463eebfeccd7ccfbb5bb15922689a915f5d37ea6ddc26b",
    },
    "metabench/ML1-sweep-v0": {
        "train": "321e38e58f850d2649d91252138d13791b04e717271c386e85173dd163e1805d",
        "test": "2deaf052bfd5ff94be77cecd6801a149106a0bb376e06d7384d134b539148d8e",
    },
    "metabench/ML1-window-open-v0": {
        "train": "d5594b294ae2d68316a2f58d0b0790a0882c2f01675139c418c71234bfa7b9a7",
        "test": "5c8636a8630f78443d69f120afc63671b6fc499c3d64adcbe26c03ba25ddc29f",
    },
    "metabench/ML1-window-close-v0": {
        "train": "7802301807cc1eb79d911fa5b3f77c02353e82a365449e14d6a20d6cf0efd716",
        "test": "298bc7d073b81fc9f4d1e86e0d60aa301bed7e6440a43165fe9d4c7082f13037",
    },
    "metabench/ML10-v0": {
        "train": "dd08ca2d80663f9669f480daa132f36da946e01932812ec505943b39e82231b7",
        "test": "637d29fecc303bc7cb6f8ab4db2add386b26cbea9b2a0374d1e8529b5dddfe7a",
    },
    "metabench/ML45-v0": {
        "train": "5dadc10fa4207ab5f01391842efe0d5d1ff1224cff4810b3bf426b594e49d3b0",
        "test": "b2625803350883e62f5c8837975cbeef2cc09dce2c5f9a33b82f4425e46e646f",
    },
}
